"""Who may use the portal: the lock-out backend, the second-factor check and the role check.

A portal page is reached only by an official who gave their password (counted by django-axes,
which locks the account out from that address after ``AXES_FAILURE_LIMIT`` failures) and then a
TOTP code from their own device (django-otp). :func:`official_required` is the one gate in
front of every portal view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps

from axes.backends import AxesStandaloneBackend
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse

from counties.models import Official

Role = Official.Role
ALL_ROLES = tuple(Role.values)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class OfficialLockoutBackend(AxesStandaloneBackend):
    """django-axes' lock-out check, for logins that come with an HTTP request.

    ``authenticate()`` without a request (a shell, a management command) has no client to count
    or lock out; axes' own backend refuses it with an exception, this one leaves it to the next
    backend."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def _with_next(url_name: str, request: HttpRequest) -> str:
    # As Django's redirect_to_login spells it ("/" left readable), so both agree.
    query = QueryDict(mutable=True)
    query[REDIRECT_FIELD_NAME] = request.get_full_path()
    return f"{reverse(url_name)}?{query.urlencode(safe='/')}"


def forbidden(request: HttpRequest, message: str = "") -> HttpResponse:
    return render(request, "counties/portal/forbidden.html", {"message": message}, status=403)


def official_of(user) -> Official | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Official.objects.select_related("township").filter(user_id=user.pk).first()


def official_required(
    view: Callable[..., HttpResponse] | None = None, *, roles: Iterable[str] = ALL_ROLES
) -> Callable[..., HttpResponse]:
    """Not logged in → the login page; password given but no TOTP code yet → the code page (or
    enrolment, for an official without a device); another role, or an auditor sending anything
    but a read → the 403 page. The official is ``request.official``; a township officer without a
    township is refused (they would otherwise see the whole county)."""
    allowed = frozenset(roles)

    def decorate(inner: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(inner)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            user = request.user
            if not user.is_authenticated:
                return redirect(_with_next("official-login", request))
            if not user.is_verified():
                return redirect(_with_next("official-verify", request))
            official = official_of(user)
            if official is None or not user.is_active:
                return forbidden(request)
            if official.role not in allowed:
                return forbidden(request)
            if official.role == Role.AUDITOR and request.method not in SAFE_METHODS:
                return forbidden(request)
            if official.role == Role.TOWNSHIP_OFFICER and official.township_id is None:
                return forbidden(request)
            request.official = official
            return inner(request, *args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


def otp_verified_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For portal pages that check roles themselves (the department-data imports): the second
    factor must have been given, like everywhere else in the portal."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.user.is_authenticated and not request.user.is_verified():
            return redirect(_with_next("official-verify", request))
        return view(request, *args, **kwargs)

    return wrapper
