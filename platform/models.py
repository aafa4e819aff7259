"""Public-schema tenancy models: the county registry and its domains."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin

# GB/T 2260 province-level prefixes (the first two digits of every division code).
PROVINCE_PREFIXES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65"
    " 71 81 82".split()
)
_CODE_RE = re.compile(r"^\d{6}$")


def validate_county_code(code: str) -> None:
    """A county-level GB/T 2260 code: six digits, a real province prefix, and neither the
    prefecture (middle two) nor the county (last two) part zero — ``410200`` is a city, not a
    county."""
    if not _CODE_RE.match(code or ""):
        raise ValidationError(
            _("县级行政区划代码必须是 6 位数字 / The county code must be 6 digits: %(code)s"),
            code="format",
            params={"code": code},
        )
    if code[:2] not in PROVINCE_PREFIXES:
        raise ValidationError(
            _("%(code)s 的前两位不是有效的省级代码 / %(code)s does not start with a province code"),
            code="province",
            params={"code": code},
        )
    if code[2:4] == "00" or code[4:] == "00":
        raise ValidationError(
            _("%(code)s 不是县级行政区划代码 / %(code)s is not a county-level code"),
            code="level",
            params={"code": code},
        )


def schema_name_for(code: str) -> str:
    return f"county_{code}"


class County(TenantMixin):
    """A county (县) is a tenant: one PostgreSQL schema holds all of its farmers' data."""

    class Status(models.TextChoices):
        ONBOARDING = "onboarding", _("接入中")
        LIVE = "live", _("已上线")
        SUSPENDED = "suspended", _("已暂停")

    code = models.CharField(_("行政区划代码"), max_length=6, unique=True, validators=[validate_county_code])
    name = models.CharField(_("名称"), max_length=64)
    province = models.CharField(_("省"), max_length=32, blank=True)
    city = models.CharField(_("市"), max_length=32, blank=True)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.ONBOARDING)
    timezone = models.CharField(_("时区"), max_length=64, default="Asia/Shanghai")
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    status_changed_at = models.DateTimeField(_("状态变更时间"), auto_now=True)

    # Schemas are created explicitly by platform.services.county_onboard, inside its checks.
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        verbose_name = _("县")
        verbose_name_plural = _("县")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Domain(DomainMixin):
    class Meta:
        verbose_name = _("域名")
        verbose_name_plural = _("域名")


class LendingPartner(models.Model):
    """A bank or lending institution that receives consented data and funds the loans."""

    code = models.SlugField(_("代码"), max_length=32, unique=True)
    name = models.CharField(_("名称"), max_length=128)
    is_active = models.BooleanField(_("启用"), default=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("贷款机构")
        verbose_name_plural = _("贷款机构")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name
