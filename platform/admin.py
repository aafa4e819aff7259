"""The platform operators' console (public host, /admin/). Onboarding and status changes call
the same services as the management commands, so the console can never do less than they do."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponseRedirect
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_tenants.utils import schema_context

from loans.webhooks import dead_letters, outbox_replay
from platform.api.services import client_create, client_revoke, client_rotate, client_validate, operator_action_record
from platform.models import County, Domain, IntegrationClient, OperatorAction, validate_county_code
from platform.services import county_onboard, county_set_status


class CountyOnboardForm(forms.ModelForm):
    domain = forms.CharField(label=gettext_lazy("主域名"), help_text="lankao.localhost")
    admin_username = forms.CharField(label=gettext_lazy("县级管理员用户名"), initial="admin")

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


@admin.register(County)
class CountyAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "province", "city", "status", "schema_name", "created_at"]
    list_filter = ["status", "province"]
    search_fields = ["code", "name"]
    actions = ["suspend", "resume"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = CountyOnboardForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["code", "name", "province", "city", "domain", "admin_username"]
        return ["code", "name", "province", "city", "status", "schema_name", "timezone"]

    def get_readonly_fields(self, request, obj=None):
        return ["code", "schema_name", "status", "timezone"] if obj else []

    def get_inlines(self, request, obj):
        return [DomainInline] if obj else []

    def save_model(self, request: HttpRequest, obj: County, form, change: bool) -> None:
        if change:
            obj.save()
            return
        data = form.cleaned_data
        try:
            result = county_onboard(
                code=data["code"], name=data["name"], province=data["province"], city=data["city"],
                domain=data["domain"], admin_username=data["admin_username"],
            )
        except ValidationError as exc:
            raise _OnboardRefused(exc) from exc
        form.instance = obj = result.county
        self._onboarded = result

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except _OnboardRefused as refused:
            self.message_user(request, "; ".join(refused.error.messages), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:platform_county_add"))

    def response_add(self, request, obj, post_url_continue=None):
        result = getattr(self, "_onboarded", None)
        if result is not None:
            note = _("已接入 %(name)s；县级管理员 %(user)s") % {"name": result.county.name, "user": result.admin_username}
            if result.generated_password:
                note += _("，初始密码（只显示这一次）：%(pw)s") % {"pw": result.generated_password}
            self.message_user(request, note, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:platform_county_changelist"))

    @admin.action(description=gettext_lazy("暂停所选县"))
    def suspend(self, request, queryset):
        for county in queryset:
            county_set_status(county=county, status=County.Status.SUSPENDED)
        self.message_user(request, _("已暂停 %(n)d 个县") % {"n": queryset.count()})

    @admin.action(description=gettext_lazy("恢复所选县"))
    def resume(self, request, queryset):
        for county in queryset:
            county_set_status(county=county, status=County.Status.LIVE)
        self.message_user(request, _("已恢复 %(n)d 个县") % {"n": queryset.count()})


class _OnboardRefused(Exception):
    def __init__(self, error: ValidationError):
        super().__init__(str(error))
        self.error = error


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ["domain", "tenant", "is_primary"]
    search_fields = ["domain", "tenant__name", "tenant__code"]


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
class IntegrationClientAdmin(admin.ModelAdmin):
    """Create, edit, rotate and revoke clients through platform.api.services; the secret is shown
    once (a message after create or rotate) and never again. Every action is audited."""

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
            operator=request.user.get_username(),
        )
        # The admin goes on with the form's instance: make it the created row.
        obj.__dict__.update({key: value for key, value in created.client.__dict__.items() if key != "_state"})
        obj._state.adding = False
        obj._state.db = created.client._state.db
        self._created_secret = created.secret

    def save_related(self, request, form, formsets, change) -> None:
        if not change:
            return  # client_create has set the counties
        super().save_related(request, form, formsets, change)
        operator_action_record(
            operator=request.user.get_username(),
            action="client.update",
            target=form.instance,
            detail={
                "changed": form.changed_data,
                "counties": sorted(form.instance.counties.values_list("code", flat=True)),
                "scopes": form.instance.scopes,
                "webhook_url": form.instance.webhook_url,
            },
        )

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(self, "_created_secret", None)
        if secret:
            self._created_secret = None
            self.message_user(request, _secret_note(obj, secret), messages.WARNING)
        return HttpResponseRedirect(reverse("admin:platform_integrationclient_change", args=[obj.pk]))

    @admin.action(description=gettext_lazy("轮换所选系统的密钥（旧密钥立即失效）"))
    def rotate(self, request, queryset):
        for client in queryset:
            try:
                rotated = client_rotate(client=client, operator=request.user.get_username())
            except ValidationError as error:
                self.message_user(request, f"{client}: {'; '.join(error.messages)}", messages.ERROR)
                continue
            self.message_user(request, _secret_note(rotated.client, rotated.secret), messages.WARNING)

    @admin.action(description=gettext_lazy("吊销所选系统"))
    def revoke(self, request, queryset):
        for client in queryset:
            client_revoke(client=client, operator=request.user.get_username())
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
                    operator=request.user.get_username(),
                    action="outbox.replay",
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
        template = engines["django"].from_string(DEAD_LETTERS_TEMPLATE)
        return TemplateResponse(request, template, context)


def _secret_note(client: IntegrationClient, secret: str) -> str:
    return _("%(name)s 的密钥 ID：%(key)s，密钥（只显示这一次，请立即交给对方安全保存）：%(secret)s") % {
        "name": client.name,
        "key": client.key_id,
        "secret": secret,
    }


# Kept here (not in templates/) so the console's integration pages live in one module.
DEAD_LETTERS_TEMPLATE = """{% extends "admin/base_site.html" %}{% load i18n %}
{% block breadcrumbs %}<div class="breadcrumbs"><a href="{% url 'admin:index' %}">{% translate "首页" %}</a>
&rsaquo; <a href="{% url 'admin:platform_integrationclient_changelist' %}">{{ opts.verbose_name_plural }}</a>
&rsaquo; {{ title }}</div>{% endblock %}
{% block content %}
<p>{% translate "以下事件多次推送到贷款机构的接收地址均失败，已停止重试。确认对方已恢复后选中并重新投递。" %}</p>
<form method="post">{% csrf_token %}
<table id="dead-letters">
<thead><tr><th></th><th>{% translate "县" %}</th><th>ID</th><th>{% translate "主题" %}</th><th>{% translate "创建时间" %}</th>
<th>{% translate "投递次数" %}</th><th>{% translate "进入死信时间" %}</th><th>{% translate "最近错误" %}</th></tr></thead>
<tbody>
{% for letter in letters %}<tr>
<td><input type="checkbox" name="message" value="{{ letter.county.code }}:{{ letter.message.pk }}"></td>
<td>{{ letter.county.name }} ({{ letter.county.code }})</td><td>{{ letter.message.pk }}</td><td>{{ letter.message.topic }}</td>
<td>{{ letter.message.created_at|date:"Y-m-d H:i:s" }}</td><td>{{ letter.message.attempts }}</td>
<td>{{ letter.message.dead_lettered_at|date:"Y-m-d H:i:s" }}</td><td>{{ letter.message.last_error|truncatechars:120 }}</td>
</tr>{% empty %}<tr><td colspan="8">{% translate "没有死信。" %}</td></tr>{% endfor %}
</tbody></table>
{% if letters %}<p><input type="submit" class="default" value="{% translate "重新投递所选事件" %}"></p>{% endif %}
</form>
{% endblock %}
"""


@admin.register(OperatorAction)
class OperatorActionAdmin(admin.ModelAdmin):
    """The audit trail, read-only (the table itself refuses UPDATE and DELETE)."""

    list_display = ["created_at", "operator", "action", "target_type", "target_label"]
    list_filter = ["action", "target_type"]
    search_fields = ["operator", "target_label", "target_id"]
    readonly_fields = ["created_at", "operator", "action", "target_type", "target_id", "target_label", "detail"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
