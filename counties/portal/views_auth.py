"""Signing in to the portal: password (locked out by django-axes after repeated failures),
then a TOTP code — or, for an official without a device yet, enrolment of one."""

from __future__ import annotations

import django_otp
import qrcode
import qrcode.image.svg
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from counties.portal import services
from counties.portal.auth import forbidden, official_of
from counties.portal.forms import TokenForm

THROTTLE_NOTICE_AFTER = 3


def _next_url(request: HttpRequest) -> str:
    candidate = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME) or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("portal-dashboard")


def _to(url_name: str, next_url: str) -> str:
    query = QueryDict(mutable=True)
    query[REDIRECT_FIELD_NAME] = next_url
    return f"{reverse(url_name)}?{query.urlencode(safe='/')}"


class OfficialLoginView(auth_views.LoginView):
    """Step one: the password. Success leads to the code (or enrolment) page, never straight
    into the portal."""

    template_name = "counties/login.html"

    def get_success_url(self) -> str:
        return _to("official-verify", self.get_redirect_url() or reverse("portal-dashboard"))


class OfficialLogoutView(auth_views.LogoutView):
    next_page = "official-login"


def _verified(request: HttpRequest, device, next_url: str) -> HttpResponse:
    # A new session key when the session gains the second factor, as at any privilege change.
    request.session.cycle_key()
    django_otp.login(request, device)
    return redirect(next_url)


@never_cache
def otp_verify(request: HttpRequest) -> HttpResponse:
    """Step two: the 6-digit code from the official's authenticator app."""
    user = request.user
    next_url = _next_url(request)
    if not user.is_authenticated:
        return redirect(_to("official-login", next_url))
    if user.is_verified():
        return redirect(next_url)
    if official_of(user) is None:
        return forbidden(request)
    device = services.totp_confirmed_device(user=user)
    if device is None:
        return redirect(_to("official-enrol", next_url))
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        verified = django_otp.verify_token(user, device.persistent_id, form.cleaned_data["token"])
        if verified is not None:
            return _verified(request, verified, next_url)
        device.refresh_from_db()
        allowed, details = device.verify_is_allowed()
        # django-otp doubles the wait after each wrong code (1, 2, 4, … seconds); say so once
        # it is long enough to notice.
        if not allowed and (details or {}).get("failure_count", 0) >= THROTTLE_NOTICE_AFTER:
            wait = (details["locked_until"] - timezone.now()).total_seconds()
            form.add_error("token", _("错误次数过多，请 %(seconds)s 秒后再试。") % {"seconds": max(int(wait) + 1, 1)})
        else:
            form.add_error("token", _("验证码不正确或已过期，请输入应用中当前显示的验证码。"))
    return render(request, "counties/portal/verify.html", {"form": form, "next": next_url})


def _qr_svg(text: str) -> str:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    return image.to_string(encoding="unicode")


@never_cache
def otp_enrol(request: HttpRequest) -> HttpResponse:
    """An official without a device (new, or whose device the county administrator reset)
    adds the secret to an authenticator app — by QR code or by hand — and proves it with a code."""
    user = request.user
    next_url = _next_url(request)
    if not user.is_authenticated:
        return redirect(_to("official-login", next_url))
    if user.is_verified():
        return redirect(next_url)
    if official_of(user) is None:
        return forbidden(request)
    if services.totp_confirmed_device(user=user) is not None:
        return redirect(_to("official-verify", next_url))
    device = services.totp_enrolment_device(user=user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if services.totp_enrolment_confirm(device=device, token=form.cleaned_data["token"]):
            device.refresh_from_db()
            messages.success(request, _("验证器已绑定。以后每次登录都需要输入其中的验证码。"))
            return _verified(request, device, next_url)
        form.add_error("token", _("验证码不正确，请确认手机时间准确后输入当前显示的验证码。"))
    config_url = device.config_url
    return render(
        request,
        "counties/portal/enrol.html",
        {
            "form": form,
            "next": next_url,
            "config_url": config_url,
            "secret": services.totp_secret_base32(device),
            # Built here from the device's own URL (no user input), so it is safe to inline.
            "qr_svg": mark_safe(_qr_svg(config_url)),  # noqa: S308
        },
    )
