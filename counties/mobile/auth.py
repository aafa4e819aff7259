"""The farmer's session on the mobile portal — separate from officials' Django logins: the
farmer's id under :data:`SESSION_FARMER`, the session key rotated at login, and
:func:`farmer_required` in front of every farmer page. The session times out after
``SESSION_COOKIE_AGE`` seconds of inactivity like every other session."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from counties.models import Farmer

SESSION_FARMER = "farmer_id"


def farmer_login(request: HttpRequest, farmer: Farmer) -> None:
    # A new session key at login: a key planted before login (session fixation) is worthless.
    request.session.cycle_key()
    request.session[SESSION_FARMER] = farmer.pk


def farmer_logout(request: HttpRequest) -> None:
    request.session.flush()


def session_farmer(request: HttpRequest) -> Farmer | None:
    farmer_id = request.session.get(SESSION_FARMER)
    if not isinstance(farmer_id, int):
        return None
    return Farmer.objects.filter(pk=farmer_id).first()


def farmer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The logged-in farmer as ``request.farmer``; anyone else goes to the login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        farmer = session_farmer(request)
        if farmer is None:
            return redirect("mobile-login")
        request.farmer = farmer
        return view(request, *args, **kwargs)

    return wrapper
