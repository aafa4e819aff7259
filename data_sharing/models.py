"""County-schema models for data shared under consent.

The catalog (categories and their field schemas) is data; government records store their
fields as validated JSON, so a new category needs a catalog entry, not a new table or code path.
Consent events and the access log are append-only: a database trigger refuses UPDATE and DELETE.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _

from counties.models import Farmer


class DataCategory(models.Model):
    class Sensitivity(models.TextChoices):
        GENERAL = "general", _("一般")
        IMPORTANT = "important", _("重要")
        SENSITIVE = "sensitive", _("敏感个人信息")

    code = models.SlugField(_("代码"), max_length=48, unique=True)
    name_zh = models.CharField(_("中文名称"), max_length=64)
    name_en = models.CharField(_("英文名称"), max_length=128)
    department_zh = models.CharField(_("提供部门"), max_length=64)
    department_en = models.CharField(_("提供部门（英文）"), max_length=128)
    # One plain sentence for the farmer's consent screen: what it is and why the lender wants it.
    purpose_zh = models.TextField(_("用途说明"))
    purpose_en = models.TextField(_("用途说明（英文）"))
    sensitivity = models.CharField(_("敏感级别"), max_length=16, choices=Sensitivity.choices)
    requires_consent = models.BooleanField(_("需要授权"), default=True)
    # {"key": [field names forming the record key], "fields": [{"name", "type", "label_zh",
    #  "label_en", "required", "min", "max", "choices", "max_length", "places"}]}
    field_schema = models.JSONField(_("字段定义"))
    schema_version = models.PositiveIntegerField(_("字段定义版本"), default=1)
    is_active = models.BooleanField(_("启用"), default=True)

    class Meta:
        verbose_name = _("数据类别")
        verbose_name_plural = _("数据类别")
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name_zh


class DataSharingAgreement(models.Model):
    """The county's agreement with a lending partner: which categories may leave, and when."""

    partner = models.ForeignKey("platform.LendingPartner", on_delete=models.PROTECT, related_name="+")
    categories = models.ManyToManyField(DataCategory, related_name="agreements")
    effective_from = models.DateField(_("生效日期"))
    effective_to = models.DateField(_("终止日期"))
    reference = models.CharField(_("协议编号"), max_length=64, unique=True)
    signed_at = models.DateTimeField(_("签署时间"))

    class Meta:
        verbose_name = _("数据共享协议")
        verbose_name_plural = _("数据共享协议")

    def __str__(self) -> str:
        return self.reference


class ImportBatch(models.Model):
    """One department file (or JSON push) for one category; imported whole or not at all."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("排队中")
        RUNNING = "running", _("导入中")
        SUCCEEDED = "succeeded", _("已导入")
        REJECTED = "rejected", _("已拒绝")
        FAILED = "failed", _("失败")

    class Source(models.TextChoices):
        UPLOAD = "upload", _("文件上传")
        API = "api", _("接口推送")
        SYNTHETIC = "synthetic", _("模拟数据")

    category = models.ForeignKey(DataCategory, on_delete=models.PROTECT, related_name="batches")
    source = models.CharField(_("来源"), max_length=16, choices=Source.choices)
    file_name = models.CharField(_("文件名"), max_length=255, blank=True)
    stored_path = models.CharField(_("存储路径"), max_length=500, blank=True)
    content_sha256 = models.CharField(_("内容摘要"), max_length=64)
    encoding = models.CharField(_("编码"), max_length=16, blank=True)
    as_of_date = models.DateField(_("数据截至日期"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(_("总行数"), default=0)
    rows_done = models.PositiveIntegerField(_("已处理行数"), default=0)
    rows_imported = models.PositiveIntegerField(_("导入行数"), default=0)
    # [{"line": 7, "field": "area_mu", "reason_zh": "...", "reason_en": "..."}], capped.
    errors = models.JSONField(_("错误"), default=list)
    error_count = models.PositiveIntegerField(_("错误数"), default=0)
    submitted_by = models.CharField(_("提交人"), max_length=150)
    created_at = models.DateTimeField(_("提交时间"), auto_now_add=True)
    finished_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("导入批次")
        verbose_name_plural = _("导入批次")
        ordering = ["-created_at"]
        constraints = [
            # The same content for the same category and date is one batch: a second upload
            # finds the first instead of importing twice.
            models.UniqueConstraint(
                fields=["category", "content_sha256", "as_of_date"], name="import_batch_unique_content"
            )
        ]

    def __str__(self) -> str:
        return f"{self.category_id}:{self.file_name or self.source}@{self.as_of_date}"


class GovernmentRecord(models.Model):
    """One version of one record (a land contract, a subsidy payment, …) of one farmer.

    A department's later extract adds a row with a later ``as_of_date``; reading "as of" a
    business date takes, per (farmer, category, record key), the newest version not after it.
    """

    category = models.ForeignKey(DataCategory, on_delete=models.PROTECT)
    farmer = models.ForeignKey(Farmer, on_delete=models.CASCADE, related_name="government_records")
    record_key = models.CharField(_("记录键"), max_length=128)
    as_of_date = models.DateField(_("数据截至日期"))
    data = models.JSONField(_("数据"))
    batch = models.ForeignKey(ImportBatch, on_delete=models.PROTECT, related_name="records")

    class Meta:
        verbose_name = _("政务数据记录")
        verbose_name_plural = _("政务数据记录")
        constraints = [
            models.UniqueConstraint(
                fields=["farmer", "category", "record_key", "as_of_date"], name="government_record_version_unique"
            )
        ]
        indexes = [models.Index(fields=["category", "farmer", "as_of_date"], name="govrec_cat_farmer_asof")]


class ConsentText(models.Model):
    """The exact text a farmer is shown for a purpose; a new version requires re-consent."""

    purpose_code = models.SlugField(_("用途代码"), max_length=32)
    version = models.PositiveIntegerField(_("版本"))
    text_zh = models.TextField(_("中文文本"))
    text_en = models.TextField(_("英文文本"))
    published_at = models.DateTimeField(_("发布时间"))

    class Meta:
        verbose_name = _("授权书文本")
        verbose_name_plural = _("授权书文本")
        constraints = [models.UniqueConstraint(fields=["purpose_code", "version"], name="consent_text_version_unique")]

    def __str__(self) -> str:
        return f"{self.purpose_code} v{self.version}"


class Consent(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("有效")
        PAUSED = "paused", _("已暂停")
        REVOKED = "revoked", _("已撤回")
        EXPIRED = "expired", _("已过期")

    class Channel(models.TextChoices):
        SELF = "self", _("本人手机")
        ASSISTED = "assisted", _("村服务点协助（短信确认）")

    farmer = models.ForeignKey(Farmer, on_delete=models.CASCADE, related_name="consents")
    partner = models.ForeignKey("platform.LendingPartner", on_delete=models.PROTECT, related_name="+")
    purpose_code = models.SlugField(_("用途代码"), max_length=32)
    text = models.ForeignKey(ConsentText, on_delete=models.PROTECT)
    categories = ArrayField(models.SlugField(max_length=48), verbose_name=_("数据类别"))
    starts_at = models.DateTimeField(_("生效时间"))
    expires_at = models.DateTimeField(_("到期时间"))
    fetch_frequency = models.CharField(_("获取频率"), max_length=16, default="daily")
    data_life_days = models.PositiveIntegerField(_("衍生数据保留天数"))
    channel = models.CharField(_("渠道"), max_length=16, choices=Channel.choices)
    assisted_by = models.CharField(_("协助人"), max_length=150, blank=True)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    status_changed_at = models.DateTimeField(_("状态变更时间"))
    # Set when the consent ends (revoked/expired): derived data is purged after this.
    ended_at = models.DateTimeField(_("终止时间"), null=True, blank=True)
    derived_data_purged_at = models.DateTimeField(_("衍生数据清除时间"), null=True, blank=True)
    receipt = models.JSONField(_("授权回执"))
    receipt_signature = models.CharField(_("回执签名"), max_length=200)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("授权")
        verbose_name_plural = _("授权")
        indexes = [models.Index(fields=["partner", "status"], name="consent_partner_status")]
        constraints = [
            # At most one live (active or paused) consent per farmer, partner and purpose.
            models.UniqueConstraint(
                fields=["farmer", "partner", "purpose_code"],
                condition=models.Q(status__in=["active", "paused"]),
                name="consent_one_live_per_purpose",
            )
        ]

    def __str__(self) -> str:
        return f"consent {self.pk} ({self.status})"


class ConsentEvent(models.Model):
    """Append-only history of a consent (the database refuses UPDATE and DELETE)."""

    class Event(models.TextChoices):
        GRANTED = "granted", _("授权")
        PAUSED = "paused", _("暂停")
        RESUMED = "resumed", _("恢复")
        REVOKED = "revoked", _("撤回")
        EXPIRED = "expired", _("过期")
        SUPERSEDED = "superseded", _("重新授权取代")

    consent = models.ForeignKey(Consent, on_delete=models.PROTECT, related_name="events")
    event = models.CharField(_("事件"), max_length=16, choices=Event.choices)
    to_status = models.CharField(_("变更后状态"), max_length=16, choices=Consent.Status.choices)
    at = models.DateTimeField(_("时间"))
    actor = models.CharField(_("操作人"), max_length=150)
    channel = models.CharField(_("渠道"), max_length=16, blank=True)
    detail = models.JSONField(_("详情"), default=dict)

    class Meta:
        verbose_name = _("授权事件")
        verbose_name_plural = _("授权事件")
        ordering = ["at", "id"]


class AccessLog(models.Model):
    """Every read of personal government data (append-only).

    A single-farmer read names the farmer. A nightly batch read is one row naming the job, the
    partner, the categories, the business date and how many farmers it covered; which farmers
    those were is exactly the set the consent gate admits for that date (reproducible from the
    append-only consent history), so the farmer's own view lists it without a row per farmer
    per night.
    """

    class Accessor(models.TextChoices):
        JOB = "job", _("批处理")
        OFFICIAL = "official", _("县级工作人员")
        FARMER = "farmer", _("本人")
        PARTNER = "partner", _("贷款机构")

    at = models.DateTimeField(_("时间"), auto_now_add=True)
    accessor_type = models.CharField(_("访问者类型"), max_length=16, choices=Accessor.choices)
    accessor = models.CharField(_("访问者"), max_length=150)
    partner = models.ForeignKey("platform.LendingPartner", null=True, on_delete=models.PROTECT, related_name="+")
    farmer = models.ForeignKey(Farmer, null=True, on_delete=models.PROTECT, related_name="access_logs")
    farmer_count = models.PositiveIntegerField(_("涉及人数"))
    categories = ArrayField(models.SlugField(max_length=48), verbose_name=_("数据类别"))
    purpose = models.CharField(_("目的"), max_length=200)
    business_date = models.DateField(_("业务日期"), null=True)

    class Meta:
        verbose_name = _("数据访问记录")
        verbose_name_plural = _("数据访问记录")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["farmer", "at"], name="accesslog_farmer_at")]
