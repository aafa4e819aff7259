"""The platform operators' console (public host, /admin/).

* Operators sign in with their password **and** a TOTP code (django-otp); an operator without a
  device is led to enrol one. A password alone reaches nothing but the code page.
* Onboarding and status changes call the same services as the management commands, so the
  console can never do less than they do.
* Every change made here — by the platform's own pages or any other app's admin registered on
  the console — is written to the append-only :class:`~platform.models.OperatorAction` trail with
  the operator, the action, the object and what changed (Django's LogEntry is kept too, but it
  can be edited and names fields, not values).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from functools import update_wrapper

import django_otp
import qrcode
import qrcode.image.svg
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django_tenants.utils import schema_context

from counties.portal import services as portal_services
from counties.portal.forms import TokenForm
from loans.webhooks import dead_letters, outbox_replay
from platform.api.services import client_create, client_revoke, client_rotate, client_validate, operator_action_record
from platform.middleware import forget_county_hosts
from platform.models import County, Domain, IntegrationClient, LendingPartner, OperatorAction, validate_county_code
from platform.selectors import CountyHealth, county_health, partner_references, platform_figures
from platform.services import county_onboard, county_set_status

Action = OperatorAction.Action
THROTTLE_NOTICE_AFTER = 3  # wrong codes before the page says how long to wait

# --- What the audit trail keeps of a form ------------------------------------------------------

# Never copied into the trail: passwords, TOTP keys, secrets, tokens.
_SECRET_WORDS = ("password", "secret", "key", "token")


def _plain(value):
    """A form or model value as JSON (rows by primary key, money and dates as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, Decimal | dt.date | dt.datetime | dt.time):
        return str(value)
    if isinstance(value, models.QuerySet | list | tuple | set | frozenset):
        items = [_plain(item) for item in value]
        return sorted(items, key=str)
    return str(value)


def _recordable(form: forms.BaseForm, name: str) -> bool:
    field = form.fields.get(name)
    secret = any(word in name.lower() for word in _SECRET_WORDS)
    return field is not None and not secret and not isinstance(field.widget, forms.PasswordInput)


def form_values(form: forms.BaseForm) -> dict:
    """What an operator entered to create something (secrets left out)."""
    data = getattr(form, "cleaned_data", {})
    return {name: _plain(data.get(name)) for name in form.fields if name in data and _recordable(form, name)}


def form_changes(form: forms.BaseForm) -> dict:
    """``{field: [before, after]}`` for each field the operator changed (secrets left out).
    Read before saving: ``form.initial`` holds the values the form was shown with."""
    data = getattr(form, "cleaned_data", {})
    return {
        name: [_plain(form.initial.get(name)), _plain(data.get(name))]
        for name in form.changed_data
        if _recordable(form, name)
    }


def _operator(request: HttpRequest) -> str:
    return request.user.get_username()


# Actions of models the console names itself; other models' are "app_label.model_name.<verb>".
_AUDIT_NAMES = {"platform.county": "county", "platform.domain": "domain", "platform.lendingpartner": "partner"}


def _audit_name(model) -> str:
    return _AUDIT_NAMES.get(model._meta.label_lower, model._meta.label_lower)


def _instance_values(obj: models.Model) -> dict:
    return {
        field.name: _plain(getattr(obj, field.attname))
        for field in obj._meta.concrete_fields
        if not any(word in field.name.lower() for word in _SECRET_WORDS)
    }


class AuditedAdmin(admin.ModelAdmin):
    """Records every addition, change and deletion this admin makes in OperatorAction, through
    the hooks Django's admin calls for each (log_addition, log_change, log_deletions — also for
    bulk deletions, list_editable and password changes), and those of its inlines. The action is
    ``<name>.create|update|delete``; ``audit_actions`` maps a verb to another action, or to None
    where the admin records the action itself."""

    audit_actions: dict[str, str | None] = {}

    def _audit(self, request: HttpRequest, verb: str, obj, detail: dict) -> None:
        action = self.audit_actions.get(verb, f"{_audit_name(self.model)}.{verb}")
        if action:
            self._audit_row(request, action, obj, detail)

    def save_model(self, request, obj, form, change) -> None:
        # Taken before saving, while the form still knows the values it was shown with.
        obj._audit_detail = {"changes": form_changes(form)} if change else {"values": form_values(form)}
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change) -> None:
        name = _audit_name(formset.model)
        changes = {f.instance.pk: form_changes(f) for f in formset.initial_forms if f.has_changed()}
        # Deleted rows lose their primary key: record them first, with what they held.
        for deleted in formset.deleted_forms:
            if deleted.instance.pk:
                self._audit_row(
                    request, f"{name}.delete", deleted.instance, {"values": _instance_values(deleted.instance)}
                )
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            self._audit_row(request, f"{name}.create", obj, {"values": _instance_values(obj)})
        for obj, _fields in formset.changed_objects:
            self._audit_row(request, f"{name}.update", obj, {"changes": changes.get(obj.pk, {})})

    def _audit_row(self, request: HttpRequest, action: str, obj, detail: dict) -> None:
        operator_action_record(operator=_operator(request), action=action, target=obj, detail=detail)

    def log_addition(self, request, obj, message):
        entry = super().log_addition(request, obj, message)
        self._audit(request, "create", obj, getattr(obj, "_audit_detail", None) or {"values": _instance_values(obj)})
        return entry

    def log_change(self, request, obj, message):
        entry = super().log_change(request, obj, message)
        detail = getattr(obj, "_audit_detail", None)
        if detail is None:
            # A change that did not come through save_model (a password change): Django's message.
            detail = {"message": json.loads(json.dumps(message, default=str))}
        if detail != {"changes": {}}:  # saved unchanged, or only its inlines changed (recorded apart)
            self._audit(request, "update", obj, detail)
        return entry

    def log_deletions(self, request, queryset):
        # Called just before the rows go; the trail keeps what they held.
        for obj in queryset:
            self._audit(request, "delete", obj, {"values": _instance_values(obj)})
        return super().log_deletions(request, queryset)


# --- The console: password, then a TOTP code --------------------------------------------------


def _needs_second_factor(request: HttpRequest) -> bool:
    user = request.user
    return user.is_authenticated and user.is_active and user.is_staff and not user.is_verified()


def _qr_svg(text: str) -> str:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    return image.to_string(encoding="unicode")


class ConsoleSite(admin.AdminSite):
    """Django's admin site with a second factor: ``has_permission`` also asks for a verified
    TOTP device, and an operator who has given only the password is sent to the code page (or
    to enrolment when they have no device yet) instead of back to the login form."""

    site_header = gettext_lazy("普惠平台运营控制台")
    site_title = gettext_lazy("普惠平台运营控制台")
    index_title = gettext_lazy("平台运营")

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and request.user.is_verified()

    def register(self, model_or_iterable, admin_class=None, **options):
        # Every admin on the console is audited, the other apps' too (operators' accounts, their
        # TOTP devices, lock-outs): mix AuditedAdmin into any class that lacks it.
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, AuditedAdmin):
            admin_class = type(f"Audited{admin_class.__name__}", (AuditedAdmin, admin_class), {})
        return super().register(model_or_iterable, admin_class, **options)

    def admin_view(self, view, cacheable=False):
        guarded = super().admin_view(view, cacheable)

        def inner(request: HttpRequest, *args, **kwargs):
            if _needs_second_factor(request):
                if view == self.logout:  # leaving must stay possible without the code
                    return view(request, *args, **kwargs)
                return redirect(self._second_factor_url(request.get_full_path()))
            return guarded(request, *args, **kwargs)

        return update_wrapper(inner, guarded)

    def login(self, request: HttpRequest, extra_context=None):
        if request.method == "GET" and _needs_second_factor(request):
            return redirect(self._second_factor_url(self._next_url(request)))
        return super().login(request, extra_context)

    def get_urls(self):
        return [
            path("second-factor/", never_cache(csrf_protect(self.second_factor_view)), name="second_factor"),
            path("second-factor/enrol/", never_cache(csrf_protect(self.enrol_view)), name="second_factor_enrol"),
            path("figures/", self.admin_view(self.figures_view), name="platform_figures"),
            *super().get_urls(),
        ]

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        for app in app_list:
            if app["app_label"] == "platform":
                app["models"].insert(
                    0,
                    {
                        "name": _("跨县汇总"),
                        "object_name": "figures",
                        "perms": {"view": True},
                        "admin_url": reverse("admin:platform_figures", current_app=self.name),
                        "add_url": None,
                        "view_only": True,
                    },
                )
        return app_list

    # The second factor ---------------------------------------------------------------------------

    def _next_url(self, request: HttpRequest) -> str:
        candidate = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME) or ""
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return candidate
        return reverse("admin:index", current_app=self.name)

    def _login_url(self, next_url: str) -> str:
        query = QueryDict(mutable=True)
        query[REDIRECT_FIELD_NAME] = next_url
        return f"{reverse('admin:login', current_app=self.name)}?{query.urlencode(safe='/')}"

    def _second_factor_url(self, next_url: str, *, enrol: bool = False) -> str:
        query = QueryDict(mutable=True)
        query[REDIRECT_FIELD_NAME] = next_url
        name = "admin:second_factor_enrol" if enrol else "admin:second_factor"
        return f"{reverse(name, current_app=self.name)}?{query.urlencode(safe='/')}"

    def _verified(self, request: HttpRequest, device, next_url: str) -> HttpResponse:
        # A new session key when the session gains the second factor, as at any privilege change.
        request.session.cycle_key()
        django_otp.login(request, device)
        return redirect(next_url)

    def _second_factor_page(self, request: HttpRequest, context: dict) -> TemplateResponse:
        request.current_app = self.name
        return TemplateResponse(request, "admin/platform/second_factor.html", {**self.each_context(request), **context})

    def _second_factor_elsewhere(self, request: HttpRequest, next_url: str) -> HttpResponse | None:
        """Where the second-factor pages send a visitor they are not for: someone not signed in
        as an active staff member to the login page, a verified operator on to ``next_url``."""
        user = request.user
        if not (user.is_authenticated and user.is_active and user.is_staff):
            return redirect(self._login_url(next_url))
        if user.is_verified():
            return redirect(next_url)
        return None

    def second_factor_view(self, request: HttpRequest) -> HttpResponse:
        """Step two: the 6-digit code from the operator's authenticator app."""
        next_url = self._next_url(request)
        elsewhere = self._second_factor_elsewhere(request, next_url)
        if elsewhere is not None:
            return elsewhere
        user = request.user
        device = portal_services.totp_confirmed_device(user=user)
        if device is None:
            return redirect(self._second_factor_url(next_url, enrol=True))
        form = TokenForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            verified = django_otp.verify_token(user, device.persistent_id, form.cleaned_data["token"])
            if verified is not None:
                return self._verified(request, verified, next_url)
            device.refresh_from_db()
            allowed, details = device.verify_is_allowed()
            # django-otp doubles the wait after each wrong code (1, 2, 4, … seconds); say so once
            # it is long enough to notice.
            if not allowed and (details or {}).get("failure_count", 0) >= THROTTLE_NOTICE_AFTER:
                wait = (details["locked_until"] - timezone.now()).total_seconds()
                form.add_error(
                    "token", _("错误次数过多，请 %(seconds)s 秒后再试。") % {"seconds": max(int(wait) + 1, 1)}
                )
            else:
                form.add_error("token", _("验证码不正确或已过期，请输入应用中当前显示的验证码。"))
        return self._second_factor_page(request, {"title": _("输入验证码"), "form": form, "next": next_url})

    def enrol_view(self, request: HttpRequest) -> HttpResponse:
        """An operator without a device adds the secret to an authenticator app (QR code or by
        hand) and proves it with a code; the enrolment is audited."""
        next_url = self._next_url(request)
        elsewhere = self._second_factor_elsewhere(request, next_url)
        if elsewhere is not None:
            return elsewhere
        user = request.user
        if portal_services.totp_confirmed_device(user=user) is not None:
            return redirect(self._second_factor_url(next_url))
        device = portal_services.totp_enrolment_device(user=user)
        form = TokenForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            if portal_services.totp_enrolment_confirm(device=device, token=form.cleaned_data["token"]):
                device.refresh_from_db()
                operator_action_record(
                    operator=user.get_username(),
                    action=Action.OPERATOR_TOTP_ENROL,
                    target=user,
                    detail={"device": device.persistent_id},
                )
                messages.success(request, _("验证器已绑定。以后每次登录都需要输入其中的验证码。"))
                return self._verified(request, device, next_url)
            form.add_error("token", _("验证码不正确，请确认手机时间准确后输入当前显示的验证码。"))
        return self._second_factor_page(
            request,
            {
                "title": _("绑定身份验证器"),
                "form": form,
                "next": next_url,
                "enrol": True,
                "secret": portal_services.totp_secret_base32(device),
                "config_url": device.config_url,
                # Built here from the device's own URL (no user input), so it is safe to inline.
                "qr_svg": mark_safe(_qr_svg(device.config_url)),  # noqa: S308
            },
        )

    # Cross-county figures ----------------------------------------------------------------------

    def figures_view(self, request: HttpRequest) -> TemplateResponse:
        """Live counties' farmers, consent, lines, loan balance and NPL, one query per county."""
        figures = platform_figures()
        request.current_app = self.name
        return TemplateResponse(
            request,
            "admin/platform/figures.html",
            {**self.each_context(request), "title": _("跨县汇总"), "figures": figures},
        )


# django-otp documents this way of giving the default site its OTP class; every admin.register in
# the project (and in django's and third-party apps) then lands on the console.
admin.site.__class__ = ConsoleSite


# --- Counties --------------------------------------------------------------------------------------


class CountyOnboardForm(forms.ModelForm):
    domain = forms.CharField(label=gettext_lazy("主域名"), help_text="lankao.localhost")
    admin_username = forms.CharField(label=gettext_lazy("县级管理员用户名"), initial="admin")
    onboarding_only = forms.BooleanField(
        label=gettext_lazy("暂不上线"),
        required=False,
        help_text=gettext_lazy("勾选则保持“接入中”状态（同 onboard_county --onboarding-only）"),
    )

    class Meta:
        model = County
        fields = ["code", "name", "province", "city"]

    def clean_code(self):
        code = self.cleaned_data["code"].strip()
        validate_county_code(code)
        return code


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


def _health(county: County) -> CountyHealth:
    # Each column of a changelist row asks; the row's object keeps the answer.
    if not hasattr(county, "_console_health"):
        county._console_health = county_health(county)
    return county._console_health


@admin.register(County)
class CountyAdmin(AuditedAdmin):
    audit_actions = {"create": Action.COUNTY_ONBOARD}
    list_display = [
        "code",
        "name",
        "province",
        "city",
        "status",
        "schema_ready",
        "migrations_state",
        "last_nightly_run",
        "farmers",
        "created_at",
    ]
    list_filter = ["status", "province"]
    search_fields = ["code", "name"]
    actions = ["suspend", "resume"]
    health_fields = ["schema_ready", "migrations_state", "last_nightly_run", "farmers"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = CountyOnboardForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["code", "name", "province", "city", "domain", "admin_username", "onboarding_only"]
        return ["code", "name", "province", "city", "status", "schema_name", "timezone", *self.health_fields]

    def get_readonly_fields(self, request, obj=None):
        return ["code", "schema_name", "status", "timezone", *self.health_fields] if obj else []

    def get_inlines(self, request, obj):
        return [DomainInline] if obj else []

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # suspend instead: a county's schema holds farmers' data and its ledger

    @admin.display(description=gettext_lazy("库结构已建"), boolean=True)
    def schema_ready(self, county: County) -> bool:
        return _health(county).schema_exists

    @admin.display(description=gettext_lazy("迁移"))
    def migrations_state(self, county: County) -> str:
        health = _health(county)
        if not health.schema_exists:
            return "—"
        if health.pending_migrations:
            return _("待迁移：%(migrations)s") % {"migrations": ", ".join(health.pending_migrations)}
        return _("已是最新")

    @admin.display(description=gettext_lazy("最近夜间批处理"))
    def last_nightly_run(self, county: County) -> str:
        health = _health(county)
        run = health.last_run
        if run is None:
            return "—"
        text = f"{run.business_date:%Y-%m-%d} {run.get_status_display()}"
        duration = health.last_run_duration
        if duration is not None:
            text += " · " + _("%(seconds)s 秒") % {"seconds": f"{duration.total_seconds():.1f}"}
        return text

    @admin.display(description=gettext_lazy("登记农民"))
    def farmers(self, county: County) -> str:
        count = _health(county).farmers
        return "—" if count is None else f"{count:,}"

    def save_model(self, request: HttpRequest, obj: County, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        obj._audit_detail = {"values": form_values(form)}
        try:
            result = county_onboard(
                code=data["code"],
                name=data["name"],
                province=data["province"],
                city=data["city"],
                domain=data["domain"],
                admin_username=data["admin_username"],
                go_live=not data["onboarding_only"],
            )
        except ValidationError as exc:
            raise _OnboardRefused(exc) from exc
        # The admin goes on with the form's instance (log_addition, response_add): make it the row.
        _become(obj, result.county)
        obj._onboarded = result

    def save_related(self, request, form, formsets, change) -> None:
        if change:  # county_onboard has created the domain
            super().save_related(request, form, formsets, change)

    def save_formset(self, request, form, formset, change) -> None:
        before = [f.initial.get("domain") for f in formset.forms if f.initial.get("domain")]
        super().save_formset(request, form, formset, change)
        forget_county_hosts([*before, *form.instance.domains.values_list("domain", flat=True)])

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except _OnboardRefused as refused:
            self.message_user(request, "; ".join(refused.error.messages), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:platform_county_add"))

    def response_add(self, request, obj, post_url_continue=None):
        result = getattr(obj, "_onboarded", None)
        if result is not None:
            note = _("已接入 %(name)s；县级管理员 %(user)s") % {
                "name": result.county.name,
                "user": result.admin_username,
            }
            if result.generated_password:
                note += _("，初始密码（只显示这一次）：%(pw)s") % {"pw": result.generated_password}
            self.message_user(request, note, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:platform_county_changelist"))

    def _set_status(self, request, queryset, status: str, action: str) -> int:
        changed = 0
        for county in queryset:
            before = county.status
            county_set_status(county=county, status=status)
            operator_action_record(
                operator=_operator(request),
                action=action,
                target=county,
                detail={"changes": {"status": [before, status]}},
            )
            changed += 1
        return changed

    @admin.action(description=gettext_lazy("暂停所选县"))
    def suspend(self, request, queryset):
        count = self._set_status(request, queryset, County.Status.SUSPENDED, Action.COUNTY_SUSPEND)
        self.message_user(request, _("已暂停 %(n)d 个县") % {"n": count})

    @admin.action(description=gettext_lazy("恢复所选县"))
    def resume(self, request, queryset):
        count = self._set_status(request, queryset, County.Status.LIVE, Action.COUNTY_RESUME)
        self.message_user(request, _("已恢复 %(n)d 个县") % {"n": count})


def _become(obj: models.Model, row: models.Model) -> None:
    """Turn the admin's unsaved instance into ``row`` (created by a service, not by the form)."""
    obj.__dict__.update({key: value for key, value in row.__dict__.items() if key != "_state"})
    obj._state.adding = False
    obj._state.db = row._state.db


class _OnboardRefused(Exception):
    def __init__(self, error: ValidationError):
        super().__init__(str(error))
        self.error = error


@admin.register(Domain)
class DomainAdmin(AuditedAdmin):
    list_display = ["domain", "tenant", "is_primary"]
    search_fields = ["domain", "tenant__name", "tenant__code"]

    def save_model(self, request, obj: Domain, form, change: bool) -> None:
        before = form.initial.get("domain")
        super().save_model(request, obj, form, change)
        forget_county_hosts([name for name in (before, obj.domain) if name])

    def delete_model(self, request, obj: Domain) -> None:
        super().delete_model(request, obj)
        forget_county_hosts([obj.domain])

    def delete_queryset(self, request, queryset) -> None:
        names = list(queryset.values_list("domain", flat=True))
        super().delete_queryset(request, queryset)
        forget_county_hosts(names)


# --- Lending partners --------------------------------------------------------------------------------


@admin.register(LendingPartner)
class LendingPartnerAdmin(AuditedAdmin):
    """A partner named by anything in any county (agreements, consents, policies, loans) or by
    an integration client cannot be deleted — deactivate it instead."""

    list_display = ["code", "name", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["code", "name"]

    def get_readonly_fields(self, request, obj=None):
        return ["code", "created_at"] if obj else []

    def get_deleted_objects(self, objs, request):
        # Django's collector would follow the county tables' foreign keys into the public schema,
        # where those tables do not exist; the references are looked up in each county's schema.
        protected = [reference for partner in objs for reference in partner_references(partner)]
        return [str(partner) for partner in objs], {self.opts.verbose_name_plural: len(objs)}, set(), protected

    def delete_model(self, request, obj: LendingPartner) -> None:
        self.delete_queryset(request, LendingPartner.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        # Nothing references these partners (get_deleted_objects checked), so no cascade to
        # collect; the foreign keys still stop a reference added meanwhile.
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {connection.ops.quote_name(LendingPartner._meta.db_table)} WHERE id = ANY(%s)",
                [list(queryset.values_list("pk", flat=True))],
            )


# --- Integration clients (banks' and departments' systems) and their events ------------------------


class IntegrationClientForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        label=gettext_lazy("权限"),
        choices=IntegrationClient.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=gettext_lazy("不选＝该类型的全部权限"),
    )
    webhook_url = forms.URLField(
        label=gettext_lazy("事件推送地址"), required=False, max_length=500, assume_scheme="https"
    )

    class Meta:
        model = IntegrationClient
        fields = ["name", "kind", "partner", "counties", "scopes", "webhook_url", "throttle_rate"]

    def clean(self):
        data = super().clean()
        kind = data.get("kind") or (self.instance.kind if self.instance.pk else None)
        partner = data.get("partner") if "partner" in self.fields else self.instance.partner
        if kind:
            try:
                data["scopes"] = client_validate(
                    kind=kind, partner=partner, scopes=data.get("scopes"), webhook_url=data.get("webhook_url", "")
                )
            except ValidationError as error:
                for field, messages_ in error.message_dict.items():
                    self.add_error(field if field in self.fields else None, messages_)
        return data


@admin.register(IntegrationClient)
class IntegrationClientAdmin(AuditedAdmin):
    """Create, edit, rotate and revoke clients through platform.api.services; the secret is shown
    once (a message after create or rotate) and never again. Every action is audited (by the
    services, and by save_related for an edit)."""

    audit_actions = {"create": None, "update": None}
    form = IntegrationClientForm
    list_display = ["name", "kind", "partner", "key_id", "is_active", "webhook_url", "created_at", "rotated_at"]
    list_filter = ["kind", "is_active", "partner"]
    search_fields = ["name", "key_id", "partner__name", "counties__code", "counties__name"]
    filter_horizontal = ["counties"]
    actions = ["rotate", "revoke"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["kind", "partner", "key_id", "is_active", "created_at", "rotated_at", "revoked_at"]

    def get_fields(self, request, obj=None):
        editable = ["name", "counties", "scopes", "webhook_url", "throttle_rate"]
        if obj is None:
            return ["name", "kind", "partner", *editable[1:]]
        return [*editable, "kind", "partner", "key_id", "is_active", "created_at", "rotated_at", "revoked_at"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the audit trail and delivered events keep naming the client

    def save_model(self, request: HttpRequest, obj: IntegrationClient, form, change: bool) -> None:
        if change:
            obj.save()
            return
        data = form.cleaned_data
        created = client_create(
            name=data["name"],
            kind=data["kind"],
            partner=data.get("partner"),
            counties=list(data["counties"]),
            scopes=data["scopes"],
            webhook_url=data.get("webhook_url", ""),
            throttle_rate=data.get("throttle_rate", ""),
            operator=_operator(request),
        )
        _become(obj, created.client)
        obj._created_secret = created.secret

    def save_related(self, request, form, formsets, change) -> None:
        if not change:
            return  # client_create has set the counties
        super().save_related(request, form, formsets, change)
        operator_action_record(
            operator=_operator(request),
            action=Action.CLIENT_UPDATE,
            target=form.instance,
            detail={
                "changed": form.changed_data,
                "counties": sorted(form.instance.counties.values_list("code", flat=True)),
                "scopes": form.instance.scopes,
                "webhook_url": form.instance.webhook_url,
            },
        )

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(obj, "_created_secret", None)
        if secret:
            self.message_user(request, _secret_note(obj, secret), messages.WARNING)
        return HttpResponseRedirect(reverse("admin:platform_integrationclient_change", args=[obj.pk]))

    @admin.action(description=gettext_lazy("轮换所选系统的密钥（旧密钥立即失效）"))
    def rotate(self, request, queryset):
        for client in queryset:
            try:
                rotated = client_rotate(client=client, operator=_operator(request))
            except ValidationError as error:
                self.message_user(request, f"{client}: {'; '.join(error.messages)}", messages.ERROR)
                continue
            self.message_user(request, _secret_note(rotated.client, rotated.secret), messages.WARNING)

    @admin.action(description=gettext_lazy("吊销所选系统"))
    def revoke(self, request, queryset):
        for client in queryset:
            client_revoke(client=client, operator=_operator(request))
        self.message_user(request, _("已吊销 %(n)d 个系统") % {"n": queryset.count()})

    def get_urls(self):
        return [
            path(
                "dead-letters/",
                self.admin_site.admin_view(self.dead_letters_view),
                name="platform_integrationclient_dead_letters",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "dead_letters_url": reverse("admin:platform_integrationclient_dead_letters"),
        }
        return super().changelist_view(request, extra_context)

    def dead_letters_view(self, request: HttpRequest):
        """Events the bank never accepted (after OUTBOX_MAX_ATTEMPTS tries), across counties;
        replaying resets their attempts so the next delivery run sends them again."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            chosen: dict[str, list[int]] = {}
            for value in request.POST.getlist("message"):
                code, _sep, pk = value.partition(":")
                if pk.isdigit():
                    chosen.setdefault(code, []).append(int(pk))
            replayed = 0
            for county in County.objects.filter(code__in=chosen):
                with schema_context(county.schema_name):
                    count = outbox_replay(message_ids=chosen[county.code])
                replayed += count
                operator_action_record(
                    operator=_operator(request),
                    action=Action.OUTBOX_REPLAY,
                    target=county,
                    detail={"message_ids": chosen[county.code], "replayed": count},
                )
            self.message_user(request, _("已重新投递 %(n)d 条事件") % {"n": replayed})
            return HttpResponseRedirect(reverse("admin:platform_integrationclient_dead_letters"))
        context = {
            **self.admin_site.each_context(request),
            "title": _("事件推送死信"),
            "opts": self.model._meta,
            "letters": dead_letters(),
        }
        return TemplateResponse(request, "admin/platform/dead_letters.html", context)


def _secret_note(client: IntegrationClient, secret: str) -> str:
    return _("%(name)s 的密钥 ID：%(key)s，密钥（只显示这一次，请立即交给对方安全保存）：%(secret)s") % {
        "name": client.name,
        "key": client.key_id,
        "secret": secret,
    }


# --- The audit trail ---------------------------------------------------------------------------------


class ActionFilter(admin.SimpleListFilter):
    """Every action recorded so far (those of other apps' admins too), labelled where known."""

    title = gettext_lazy("操作")
    parameter_name = "action"

    def lookups(self, request, model_admin):
        labels = dict(Action.choices)
        recorded = OperatorAction.objects.order_by("action").values_list("action", flat=True).distinct()
        return [(action, labels.get(action, action)) for action in recorded]

    def queryset(self, request, queryset):
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(OperatorAction)
class OperatorActionAdmin(AuditedAdmin):
    """The audit trail, read-only (the table itself refuses UPDATE and DELETE)."""

    list_display = ["created_at", "operator", "action_label", "target_type", "target_label"]
    list_filter = [ActionFilter, "target_type", "operator"]
    search_fields = ["operator", "target_label", "target_id", "action"]
    date_hierarchy = "created_at"
    fields = ["created_at", "operator", "action", "target_type", "target_id", "target_label", "detail"]
    readonly_fields = fields

    @admin.display(description=gettext_lazy("操作"), ordering="action")
    def action_label(self, obj: OperatorAction) -> str:
        return f"{obj.get_action_display()} ({obj.action})" if obj.action in Action.values else obj.action

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
