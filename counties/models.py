"""County-schema models: the county's structure, its officials and the farmer roster."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Township(models.Model):
    """乡镇: 9-digit statistical code (county code + 3 digits)."""

    code = models.CharField(_("乡镇代码"), max_length=9, unique=True)
    name = models.CharField(_("乡镇名称"), max_length=64)

    class Meta:
        verbose_name = _("乡镇")
        verbose_name_plural = _("乡镇")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Village(models.Model):
    """行政村: 12-digit statistical code (township code + 3 digits)."""

    township = models.ForeignKey(Township, on_delete=models.PROTECT, related_name="villages")
    code = models.CharField(_("村代码"), max_length=12, unique=True)
    name = models.CharField(_("村名称"), max_length=64)

    class Meta:
        verbose_name = _("村")
        verbose_name_plural = _("村")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Household(models.Model):
    """农户 (户): the unit land contracts and subsidies are registered to."""

    village = models.ForeignKey(Village, on_delete=models.PROTECT, related_name="households")
    code = models.CharField(_("户编号"), max_length=20, unique=True)
    members = models.PositiveSmallIntegerField(_("家庭人口"), default=1)

    class Meta:
        verbose_name = _("农户")
        verbose_name_plural = _("农户")

    def __str__(self) -> str:
        return self.code


class Farmer(models.Model):
    """A person on the county's roster. ID and phone numbers are stored encrypted, with a keyed
    hash (blind index) for exact lookup; see :mod:`data_sharing.pii`. Never store them plain."""

    class Gender(models.TextChoices):
        MALE = "M", _("男")
        FEMALE = "F", _("女")

    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="farmers")
    # Denormalised from household so township/village queries at county scale need no join.
    village = models.ForeignKey(Village, on_delete=models.PROTECT, related_name="farmers")
    name = models.CharField(_("姓名"), max_length=32)
    gender = models.CharField(_("性别"), max_length=1, choices=Gender.choices)
    birth_date = models.DateField(_("出生日期"))
    is_household_head = models.BooleanField(_("户主"), default=False)
    id_number_encrypted = models.TextField(_("身份证号（密文）"))
    id_number_hash = models.CharField(_("身份证号索引"), max_length=64)
    phone_encrypted = models.TextField(_("手机号（密文）"), blank=True)
    phone_hash = models.CharField(_("手机号索引"), max_length=64, blank=True)
    registered_at = models.DateTimeField(_("登记时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("农民")
        verbose_name_plural = _("农民")
        # Declared here rather than with unique=/db_index= on the fields: those also add a
        # varchar_pattern_ops "_like" index per field, which exact hash lookups never use and
        # which costs a county-scale load dearly.
        constraints = [models.UniqueConstraint(fields=["id_number_hash"], name="farmer_id_number_hash_unique")]
        indexes = [models.Index(fields=["phone_hash"], name="farmer_phone_hash")]

    def __str__(self) -> str:
        return self.name


class Official(models.Model):
    """A county official's role; the login itself is a Django user in the county's schema."""

    class Role(models.TextChoices):
        COUNTY_ADMIN = "county_admin", _("县级管理员")
        DATA_OFFICER = "data_officer", _("数据专员")
        TOWNSHIP_OFFICER = "township_officer", _("乡镇专员")
        RISK_OFFICER = "risk_officer", _("风控专员")
        AUDITOR = "auditor", _("审计员")

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="official")
    role = models.CharField(_("角色"), max_length=32, choices=Role.choices)
    township = models.ForeignKey(Township, null=True, blank=True, on_delete=models.PROTECT)

    class Meta:
        verbose_name = _("县级工作人员")
        verbose_name_plural = _("县级工作人员")

    def __str__(self) -> str:
        return f"{self.user.get_username()} ({self.get_role_display()})"


class TownshipDailyStat(models.Model):
    """Registered households and farmers per township per business date: the denominators of
    coverage figures, written by the nightly job in one set-based statement."""

    business_date = models.DateField(_("业务日期"))
    township = models.ForeignKey(Township, on_delete=models.CASCADE)
    households = models.PositiveIntegerField(_("户数"))
    farmers = models.PositiveIntegerField(_("人数"))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["business_date", "township"], name="township_daily_stat_unique")
        ]


class NightlyRun(models.Model):
    """One county's nightly work for one business date. Rerunning the same date reuses the row:
    every step is idempotent, so a rerun converges instead of duplicating."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("排队中")
        RUNNING = "running", _("运行中")
        SUCCEEDED = "succeeded", _("已完成")
        FAILED = "failed", _("失败")

    business_date = models.DateField(_("业务日期"), unique=True)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(_("运行次数"), default=0)
    started_at = models.DateTimeField(_("开始时间"), null=True, blank=True)
    finished_at = models.DateTimeField(_("结束时间"), null=True, blank=True)
    # [{"name": dotted path, "status": ..., "counts": {...}, "seconds": float}] in run order
    # (a list, because jsonb does not keep object key order).
    steps = models.JSONField(_("步骤"), default=list)
    error = models.TextField(_("错误"), blank=True)

    class Meta:
        verbose_name = _("夜间批处理")
        verbose_name_plural = _("夜间批处理")
        ordering = ["-business_date"]


class SmsLoginCode(models.Model):
    """A login code sent by SMS to a farmer's phone (the mobile portal, /m/login/). Only a keyed
    hash of the code is kept, and the phone only as its blind index. Rows are kept for an hour
    at least: they are what the per-phone send limit counts, in PostgreSQL so the limit holds
    across every web process."""

    phone_hash = models.CharField(_("手机号索引"), max_length=64)
    code_hash = models.CharField(_("验证码摘要"), max_length=64)
    created_at = models.DateTimeField(_("发送时间"))
    expires_at = models.DateTimeField(_("失效时间"))
    used_at = models.DateTimeField(_("使用时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("短信登录验证码")
        verbose_name_plural = _("短信登录验证码")
        indexes = [models.Index(fields=["phone_hash", "created_at"], name="sms_login_code_phone")]


class SmsLoginGuard(models.Model):
    """Per-phone login state that must hold across processes: wrong codes (or a wrong name and
    ID number at first login) counted towards a lock-out. Its row is locked (SELECT … FOR
    UPDATE) while a code is sent or checked, so concurrent requests for one phone queue up
    instead of both passing a limit."""

    phone_hash = models.CharField(_("手机号索引"), max_length=64)
    failed_attempts = models.PositiveSmallIntegerField(_("连续错误次数"), default=0)
    last_failed_at = models.DateTimeField(_("最近错误时间"), null=True, blank=True)
    locked_until = models.DateTimeField(_("锁定至"), null=True, blank=True)

    class Meta:
        verbose_name = _("短信登录限制")
        verbose_name_plural = _("短信登录限制")
        # A constraint rather than unique=True: exact hash lookups need no "_like" index.
        constraints = [models.UniqueConstraint(fields=["phone_hash"], name="sms_login_guard_phone_unique")]


class PortfolioDailyStat(models.Model):
    """Credit and loan figures per township per business date: the history behind the officials'
    dashboard, written by the nightly step :func:`counties.portal.portfolio.portfolio_stats_refresh`
    in one set-based upsert. Registered farmers per date are in :class:`TownshipDailyStat`."""

    business_date = models.DateField(_("业务日期"))
    township = models.ForeignKey(Township, on_delete=models.CASCADE)
    consented_farmers = models.PositiveIntegerField(_("有效授权人数"))
    lined_farmers = models.PositiveIntegerField(_("有可用额度人数"))
    lines_amount = models.DecimalField(_("授信总额"), max_digits=16, decimal_places=2)
    lines_used = models.DecimalField(_("已用额度"), max_digits=16, decimal_places=2)
    loans = models.PositiveIntegerField(_("在贷笔数"))
    loan_balance = models.DecimalField(_("贷款余额"), max_digits=16, decimal_places=2)
    overdue_balance = models.DecimalField(_("逾期贷款余额"), max_digits=16, decimal_places=2)
    npl_balance = models.DecimalField(_("不良贷款余额"), max_digits=16, decimal_places=2)

    class Meta:
        verbose_name = _("乡镇信贷日统计")
        verbose_name_plural = _("乡镇信贷日统计")
        constraints = [
            models.UniqueConstraint(fields=["business_date", "township"], name="portfolio_daily_stat_unique")
        ]


class FarmerLookup(models.Model):
    """An official opening one farmer's page: who, when, why (a purpose and a note), and the
    consent gate's access-log row of the read it made. Append-only, like the access log."""

    class Purpose(models.TextChoices):
        LOAN_SERVICING = "loan_servicing", _("贷后管理")
        FARMER_REQUEST = "farmer_request", _("农户本人咨询或申请")
        COMPLAINT = "complaint", _("投诉处理")
        DATA_CORRECTION = "data_correction", _("数据核对与更正")
        RISK_REVIEW = "risk_review", _("风险核查")

    at = models.DateTimeField(_("时间"), auto_now_add=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # Kept as text too: the record must still say who it was if the account is renamed.
    username = models.CharField(_("工作人员"), max_length=150)
    role = models.CharField(_("角色"), max_length=32, choices=Official.Role.choices)
    farmer = models.ForeignKey(Farmer, on_delete=models.PROTECT, related_name="lookups")
    purpose = models.CharField(_("查询目的"), max_length=32, choices=Purpose.choices)
    note = models.CharField(_("说明"), max_length=200, blank=True)
    access_log = models.OneToOneField(
        "data_sharing.AccessLog", null=True, blank=True, on_delete=models.PROTECT, related_name="lookup"
    )

    class Meta:
        verbose_name = _("农民信息查询")
        verbose_name_plural = _("农民信息查询")
        ordering = ["-at", "-id"]
