"""The platform operators' console (public host, /admin/). Onboarding and status changes call
the same services as the management commands, so the console can never do less than they do."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from platform.models import County, Domain, validate_county_code
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
