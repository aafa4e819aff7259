"""Public-schema models: the county registry and its domains, lending partners, integration
clients (banks and departments calling the API) and the operators' audit trail."""

from __future__ import annotations

import re

from django.contrib.postgres.fields import ArrayField
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


class IntegrationClient(models.Model):
    """A bank's or a government department's system that calls the platform API with signed
    requests (``platform.api.auth``). The secret is needed server-side to check the HMAC, so it is
    stored encrypted (``data_sharing.pii.encrypt``), never hashed, and shown to the operator
    once, when it is created or rotated."""

    class Kind(models.TextChoices):
        BANK = "bank", _("贷款机构系统")
        DEPARTMENT = "department", _("政府部门系统")

    class Scope(models.TextChoices):
        LINES_READ = "lines:read", _("读取授信额度")
        QUOTES = "quotes", _("试算还款计划")
        DISBURSEMENTS = "disbursements", _("查询并确认放款")
        REPAYMENTS = "repayments", _("入账还款")
        LOANS_READ = "loans:read", _("查询贷款")
        RECORDS_PUSH = "records:push", _("推送部门数据")

    BANK_SCOPES = [Scope.LINES_READ, Scope.QUOTES, Scope.DISBURSEMENTS, Scope.REPAYMENTS, Scope.LOANS_READ]
    DEPARTMENT_SCOPES = [Scope.RECORDS_PUSH]

    name = models.CharField(_("名称"), max_length=128)
    kind = models.CharField(_("类型"), max_length=16, choices=Kind.choices)
    partner = models.ForeignKey(
        LendingPartner,
        verbose_name=_("贷款机构"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="integration_clients",
    )
    counties = models.ManyToManyField(County, verbose_name=_("可代表的县"), related_name="integration_clients")
    scopes = ArrayField(models.CharField(max_length=32, choices=Scope.choices), verbose_name=_("权限"), default=list)
    key_id = models.CharField(_("密钥 ID"), max_length=40, unique=True)
    secret_encrypted = models.TextField(_("密钥（加密）"))
    is_active = models.BooleanField(_("启用"), default=True)
    # Empty: the default rate of REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["integration_client"].
    throttle_rate = models.CharField(_("限流"), max_length=16, blank=True, help_text="600/min")
    webhook_url = models.URLField(_("事件推送地址"), blank=True, max_length=500)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    rotated_at = models.DateTimeField(_("密钥轮换时间"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("吊销时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("接入系统")
        verbose_name_plural = _("接入系统")
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind="bank") | models.Q(partner__isnull=False), name="bank_client_has_partner"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id})"


class OperatorAction(models.Model):
    """Audit trail of platform operators' actions in the console (append-only: the database
    refuses UPDATE, DELETE and TRUNCATE). No foreign keys, so the trail outlives what it names.
    ``detail`` holds what changed: ``{"changes": {field: [before, after]}}`` for an edit, the
    values given for a creation, the ids for a replay."""

    class Action(models.TextChoices):
        COUNTY_ONBOARD = "county.onboard", _("接入县")
        COUNTY_UPDATE = "county.update", _("修改县信息")
        COUNTY_SUSPEND = "county.suspend", _("暂停县")
        COUNTY_RESUME = "county.resume", _("恢复县")
        DOMAIN_CREATE = "domain.create", _("添加域名")
        DOMAIN_UPDATE = "domain.update", _("修改域名")
        DOMAIN_DELETE = "domain.delete", _("删除域名")
        PARTNER_CREATE = "partner.create", _("添加贷款机构")
        PARTNER_UPDATE = "partner.update", _("修改贷款机构")
        PARTNER_DELETE = "partner.delete", _("删除贷款机构")
        CLIENT_CREATE = "client.create", _("创建接入系统")
        CLIENT_UPDATE = "client.update", _("修改接入系统")
        CLIENT_ROTATE = "client.rotate", _("轮换密钥")
        CLIENT_REVOKE = "client.revoke", _("吊销接入系统")
        OUTBOX_REPLAY = "outbox.replay", _("重新投递死信")
        OPERATOR_TOTP_ENROL = "operator.totp_enrol", _("绑定身份验证器")

    operator = models.CharField(_("操作人"), max_length=150)
    action = models.CharField(_("操作"), max_length=48, choices=Action.choices)
    target_type = models.CharField(_("对象类型"), max_length=48)
    target_id = models.CharField(_("对象 ID"), max_length=64)
    target_label = models.CharField(_("对象"), max_length=200, blank=True)
    detail = models.JSONField(_("详情"), default=dict, blank=True)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("运营操作记录")
        verbose_name_plural = _("运营操作记录")
        ordering = ["-created_at", "-id"]
        # An object's history: "who changed this client / county, and when".
        indexes = [models.Index(fields=["target_type", "target_id"], name="operatoraction_target")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.operator} {self.action} {self.target_label}"
