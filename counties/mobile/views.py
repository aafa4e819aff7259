"""The farmer portal's pages under /m/ (thin: validate, call one service or selector, render).

Login is three short steps kept in the session, never in a URL: phone → code → (first login
only) name and ID number. The phone travels between the steps encrypted in the session. Every
state change is a POST with a CSRF token; any object id in a URL is looked up among the
logged-in farmer's own objects, so anyone else's answers 404.
"""

from __future__ import annotations

import datetime as dt
import json

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from counties.mobile import selectors, services
from counties.mobile.auth import farmer_login, farmer_logout, farmer_required, session_farmer
from counties.mobile.forms import CodeForm, GrantForm, IdentifyForm, PhoneForm
from data_sharing import services as consent_services
from data_sharing.consent_selectors import consent_screen_categories
from data_sharing.models import Consent, DataCategory
from data_sharing.pii import decrypt, encrypt, mask_phone
from data_sharing.receipts import receipt_document

SESSION_LOGIN = "mobile_login"
# A login started (code sent, or code checked on a first login) must be finished within this.
LOGIN_STEP_TTL = dt.timedelta(minutes=15)
ACCESS_PAGE_SIZE = 20


def _demo_mode() -> bool:
    return settings.PUHUI_MODE == "local"


def _optional_url(name: str) -> str:
    """The URL of a page that may not be built yet (borrowing, my loans), else ''."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return ""


def _one_language(error: ValidationError) -> str:
    """The services' refusals read "中文 / English"; the page shows its own language's half."""
    text = " ".join(error.messages)
    chinese, separator, english = text.partition(" / ")
    if not separator:
        return text
    return english if selectors.english() else chinese


# --- Login -------------------------------------------------------------------------------------


def _login_state(request: HttpRequest) -> dict | None:
    state = request.session.get(SESSION_LOGIN)
    if not isinstance(state, dict):
        return None
    if timezone.now() - dt.datetime.fromisoformat(state["at"]) > LOGIN_STEP_TTL:
        request.session.pop(SESSION_LOGIN, None)
        return None
    return state


def _save_login_state(request: HttpRequest, state: dict) -> None:
    state["at"] = timezone.now().isoformat()
    request.session[SESSION_LOGIN] = state


def _logged_in(request: HttpRequest, farmer) -> HttpResponse:
    request.session.pop(SESSION_LOGIN, None)
    farmer_login(request, farmer)
    return redirect("mobile-home")


@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    if session_farmer(request) is not None:
        return redirect("mobile-home")
    form = PhoneForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        phone = form.cleaned_data["phone"]
        try:
            sent = services.login_code_send(phone=phone)
        except services.LoginRefused as refusal:
            form.add_error(None, refusal.message)
        else:
            _save_login_state(
                request,
                {"phone": encrypt(phone), "verified": False, "demo_code": sent.code if _demo_mode() else ""},
            )
            return redirect("mobile-login-code")
    return render(request, "mobile/login.html", {"form": form, "demo_phones": selectors.demo_phones()})


@require_http_methods(["GET", "POST"])
def login_code(request: HttpRequest) -> HttpResponse:
    state = _login_state(request)
    if state is None:
        return redirect("mobile-login")
    phone = decrypt(state["phone"])
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.login_code_verify(phone=phone, code=form.cleaned_data["code"])
        except services.LoginRefused as refusal:
            form.add_error(None, refusal.message)
        else:
            farmer = selectors.farmer_for_phone(phone=phone)
            if farmer is not None:
                return _logged_in(request, farmer)
            _save_login_state(request, {"phone": state["phone"], "verified": True, "demo_code": ""})
            return redirect("mobile-login-identify")
    context = {
        "form": form,
        "masked_phone": mask_phone(phone),
        "demo_code": state.get("demo_code") if _demo_mode() else "",
        "minutes": int(services.CODE_TTL.total_seconds() // 60),
    }
    return render(request, "mobile/login_code.html", context)


@require_POST
def login_resend(request: HttpRequest) -> HttpResponse:
    state = _login_state(request)
    if state is None:
        return redirect("mobile-login")
    try:
        sent = services.login_code_send(phone=decrypt(state["phone"]))
    except services.LoginRefused as refusal:
        messages.error(request, refusal.message)
    else:
        _save_login_state(
            request, {"phone": state["phone"], "verified": False, "demo_code": sent.code if _demo_mode() else ""}
        )
        messages.success(request, _("新的验证码已发出，请用最新的一条。"))
    return redirect("mobile-login-code")


@require_http_methods(["GET", "POST"])
def login_identify(request: HttpRequest) -> HttpResponse:
    state = _login_state(request)
    if state is None or not state.get("verified"):
        return redirect("mobile-login")
    form = IdentifyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            farmer = services.farmer_identify(
                phone=decrypt(state["phone"]), name=form.cleaned_data["name"], id_number=form.cleaned_data["id_number"]
            )
        except services.LoginRefused as refusal:
            form.add_error(None, refusal.message)
        else:
            return _logged_in(request, farmer)
    return render(request, "mobile/login_identify.html", {"form": form})


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    farmer_logout(request)
    return redirect("mobile-login")


# --- Home --------------------------------------------------------------------------------------


@farmer_required
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "status": selectors.line_status(farmer=request.farmer),
        "notices": selectors.farmer_messages(request.farmer),
        "borrow_url": _optional_url("mobile-borrow"),
        "loans_url": _optional_url("mobile-loans"),
    }
    return render(request, "mobile/home.html", context)


# --- Consent -----------------------------------------------------------------------------------


@farmer_required
def consent(request: HttpRequest) -> HttpResponse:
    screen = selectors.consent_screen(farmer=request.farmer, county_name=request.tenant.name)
    return render(request, "mobile/consent.html", {"screen": screen})


@require_POST
@farmer_required
def consent_grant(request: HttpRequest) -> HttpResponse:
    partner = selectors.portal_partner()
    if partner is None:
        raise Http404
    offered = consent_screen_categories(partner=partner)
    sensitive = DataCategory.Sensitivity.SENSITIVE
    form = GrantForm(
        request.POST,
        general=[category.code for category in offered if category.sensitivity != sensitive],
        sensitive=[category.code for category in offered if category.sensitivity == sensitive],
    )
    if not form.is_valid():
        messages.error(request, " ".join(str(message) for errors in form.errors.values() for message in errors))
        return redirect("mobile-consent")
    try:
        consent_services.consent_grant(
            farmer=request.farmer,
            partner=partner,
            categories=form.cleaned_data["chosen"],
            channel=Consent.Channel.SELF,
            sms_confirmed=False,
            actor=f"farmer:{request.farmer.pk}",
        )
    except ValidationError as error:
        messages.error(request, _one_language(error))
        return redirect("mobile-consent")
    messages.success(request, _("授权成功。额度将在今晚计算，明天来看。"))
    return redirect("mobile-home")


def _consent_change(request: HttpRequest, consent_id: int, change, done: str) -> HttpResponse:
    consent = selectors.farmer_consent(farmer=request.farmer, consent_id=consent_id)
    if consent is None:
        raise Http404
    try:
        change(consent=consent, actor=f"farmer:{request.farmer.pk}", channel=Consent.Channel.SELF)
    except ValidationError as error:
        messages.error(request, _one_language(error))
    else:
        messages.success(request, done)
    return redirect("mobile-consent")


@require_POST
@farmer_required
def consent_pause(request: HttpRequest, consent_id: int) -> HttpResponse:
    return _consent_change(
        request, consent_id, consent_services.consent_pause, _("已暂停授权。您的数据不再共享，额度暂时不能用。")
    )


@require_POST
@farmer_required
def consent_resume(request: HttpRequest, consent_id: int) -> HttpResponse:
    return _consent_change(request, consent_id, consent_services.consent_resume, _("已恢复授权。"))


@require_POST
@farmer_required
def consent_revoke(request: HttpRequest, consent_id: int) -> HttpResponse:
    return _consent_change(
        request, consent_id, consent_services.consent_revoke, _("已撤回授权。您的数据不再共享，额度已冻结。")
    )


@farmer_required
def consent_receipt(request: HttpRequest, consent_id: int) -> HttpResponse:
    """The signed receipt as a JSON download (``manage.py verify_receipt`` checks it)."""
    consent = selectors.farmer_consent(farmer=request.farmer, consent_id=consent_id)
    if consent is None or not consent.receipt:
        raise Http404
    body = json.dumps(receipt_document(consent=consent), ensure_ascii=False, indent=2, sort_keys=True)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="consent-receipt-{consent.receipt["receipt_id"]}.json"'
    return response


# --- My data -----------------------------------------------------------------------------------


@farmer_required
def my_data(request: HttpRequest) -> HttpResponse:
    data = selectors.my_data(farmer=request.farmer)
    accesses = Paginator(selectors.access_history(farmer=request.farmer), ACCESS_PAGE_SIZE)
    return render(
        request, "mobile/my_data.html", {"data": data, "accesses": accesses.get_page(request.GET.get("page"))}
    )
