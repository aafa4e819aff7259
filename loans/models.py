"""County-schema models for credit: policy, scorecards, nightly assessments and credit lines.

Money is ``Decimal`` yuan with 2 places; PD is a fraction with 6 places; rates are annual
fractions. Every assessment keeps what it was computed from (features, scorecard and policy
versions) so a farmer's "why" can always be answered.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _

from counties.models import Farmer

MONEY = {"max_digits": 14, "decimal_places": 2}


class CreditPolicy(models.Model):
    """A versioned county credit policy. Only one is ACTIVE; activation needs a second official
    (the approver must differ from the submitter); every change is audited in PolicyEvent."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("草稿")
        PENDING = "pending", _("待审批")
        ACTIVE = "active", _("生效中")
        RETIRED = "retired", _("已停用")

    version = models.PositiveIntegerField(_("版本"), unique=True)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.DRAFT)
    partner = models.ForeignKey("platform.LendingPartner", on_delete=models.PROTECT, related_name="+")
    min_line = models.DecimalField(_("最低额度"), default=Decimal("1000.00"), **MONEY)
    max_line = models.DecimalField(_("最高额度"), default=Decimal("200000.00"), **MONEY)
    rounding_unit = models.DecimalField(_("取整单位"), default=Decimal("100.00"), **MONEY)
    min_age = models.PositiveSmallIntegerField(_("最低年龄"), default=18)
    max_age = models.PositiveSmallIntegerField(_("最高年龄"), default=65)
    validity_months = models.PositiveSmallIntegerField(_("额度有效期（月）"), default=12)
    # Income proxy (yuan/year) = base_income + income_per_mu × operated area (mu).
    base_income = models.DecimalField(_("基础收入（元/年）"), default=Decimal("20000.00"), **MONEY)
    income_per_mu = models.DecimalField(_("每亩收入（元/年）"), default=Decimal("1500.00"), **MONEY)
    # [{"grade": "A", "max_pd": "0.005", "multiplier": "1.20", "cap": "200000", "annual_rate": "0.0435"}, …]
    # ordered best first; a farmer gets the first grade whose max_pd is >= their PD. A grade
    # with multiplier 0 grants no line.
    grades = models.JSONField(_("等级表"))
    created_by = models.CharField(_("创建人"), max_length=150)
    submitted_by = models.CharField(_("提交人"), max_length=150, blank=True)
    approved_by = models.CharField(_("审批人"), max_length=150, blank=True)
    activated_at = models.DateTimeField(_("生效时间"), null=True, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("授信政策")
        verbose_name_plural = _("授信政策")
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=models.Q(status="active"), name="one_active_policy")
        ]

    def __str__(self) -> str:
        return f"policy v{self.version} ({self.status})"


class PolicyEvent(models.Model):
    """Append-only audit of every policy change (created, edited, submitted, approved, retired)."""

    policy = models.ForeignKey(CreditPolicy, on_delete=models.PROTECT, related_name="events")
    event = models.CharField(_("事件"), max_length=32)
    actor = models.CharField(_("操作人"), max_length=150)
    at = models.DateTimeField(_("时间"), auto_now_add=True)
    changes = models.JSONField(_("变更"), default=dict)

    class Meta:
        ordering = ["at", "id"]


class Scorecard(models.Model):
    """A WoE-binned logistic-regression scorecard as a readable spec (bins and points per
    feature), versioned. Scoring reads the spec, not a pickled model."""

    version = models.PositiveIntegerField(_("版本"), unique=True)
    source = models.CharField(_("来源"), max_length=16)  # "default" (shipped) or "trained"
    spec = models.JSONField(_("评分卡"))
    metrics = models.JSONField(_("验证指标"), default=dict)  # gini, ks, iv per feature, sizes
    # Score distribution at training: {"edges": [...], "shares": [...]} for the PSI.
    baseline = models.JSONField(_("基准分布"))
    is_active = models.BooleanField(_("启用"), default=False)
    trained_at = models.DateTimeField(_("训练时间"))

    class Meta:
        verbose_name = _("评分卡")
        verbose_name_plural = _("评分卡")
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True), name="one_active_scorecard")
        ]

    def __str__(self) -> str:
        return f"scorecard v{self.version}"


class CreditOutcome(models.Model):
    """A past loan of the farmer on the platform and how it ended: the labelled history the
    scorecard trains on (bad = 90+ days past due) and the source of the repayment-history
    features. The loan lifecycle adds a row when a loan closes."""

    farmer = models.ForeignKey(Farmer, on_delete=models.CASCADE, related_name="credit_outcomes")
    started_on = models.DateField(_("放款日期"))
    closed_on = models.DateField(_("结清日期"))
    principal = models.DecimalField(_("本金"), **MONEY)
    max_days_past_due = models.PositiveIntegerField(_("最长逾期天数"))
    bad = models.BooleanField(_("违约"))

    class Meta:
        indexes = [models.Index(fields=["farmer", "closed_on"], name="credit_outcome_farmer")]


class AssessmentRun(models.Model):
    """The credit step of one county's nightly run: chunks, counts and the PSI."""

    class Status(models.TextChoices):
        RUNNING = "running", _("运行中")
        SUCCEEDED = "succeeded", _("已完成")
        FAILED = "failed", _("失败")

    business_date = models.DateField(_("业务日期"), unique=True)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.RUNNING)
    policy = models.ForeignKey(CreditPolicy, on_delete=models.PROTECT)
    scorecard = models.ForeignKey(Scorecard, on_delete=models.PROTECT)
    chunk_size = models.PositiveIntegerField(_("分块大小"))
    chunks_total = models.PositiveIntegerField(_("分块数"), default=0)
    chunks_done = models.PositiveIntegerField(_("已完成分块"), default=0)
    # {"scored", "eligible", "lines_up", "lines_down", "lines_new", "frozen", "excluded": {...}}
    counts = models.JSONField(_("统计"), default=dict)
    psi = models.DecimalField(_("PSI"), max_digits=8, decimal_places=4, null=True, blank=True)
    psi_warning = models.BooleanField(_("PSI 预警"), default=False)
    started_at = models.DateTimeField(_("开始时间"))
    finished_at = models.DateTimeField(_("结束时间"), null=True, blank=True)
    error = models.TextField(_("错误"), blank=True)

    class Meta:
        ordering = ["-business_date"]


class AssessmentChunk(models.Model):
    """One chunk of farmers (by id range) of a run; a rerun does only chunks not yet done."""

    run = models.ForeignKey(AssessmentRun, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField(_("序号"))
    first_farmer_id = models.BigIntegerField()
    last_farmer_id = models.BigIntegerField()
    done = models.BooleanField(default=False)
    counts = models.JSONField(default=dict)
    seconds = models.FloatField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="assessment_chunk_unique")]


class CreditAssessment(models.Model):
    """One farmer's assessment for one business date."""

    business_date = models.DateField(_("业务日期"))
    farmer = models.ForeignKey(Farmer, on_delete=models.CASCADE, related_name="assessments")
    eligible = models.BooleanField(_("符合条件"))
    # Eligibility rules the farmer failed (codes), empty when eligible.
    exclusions = ArrayField(models.CharField(max_length=32), default=list, verbose_name=_("排除原因"))
    score = models.IntegerField(_("评分"), null=True)
    pd = models.DecimalField(_("违约概率"), max_digits=8, decimal_places=6, null=True)
    grade = models.CharField(_("等级"), max_length=4, blank=True)
    line_amount = models.DecimalField(_("额度"), null=True, **MONEY)
    features = models.JSONField(_("特征"))
    # [{"feature", "points_lost", "text_zh", "text_en"}] × 3, and one actionable hint.
    reasons = models.JSONField(_("原因"), default=list)
    hint = models.JSONField(_("提额建议"), default=dict)
    scorecard_version = models.PositiveIntegerField(_("评分卡版本"))
    policy_version = models.PositiveIntegerField(_("政策版本"))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["business_date", "farmer"], name="assessment_unique_per_day")
        ]


class CreditLine(models.Model):
    """A farmer's pre-approved line: one per farmer, updated in place each night."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("可用")
        SUSPENDED = "suspended", _("已冻结")
        EXPIRED = "expired", _("已过期")

    class Suspension(models.TextChoices):
        NONE = "", _("无")
        NO_CONSENT = "no_consent", _("授权已撤回或暂停")
        OVERDUE = "overdue", _("有逾期")
        INELIGIBLE = "ineligible", _("不再符合条件")

    farmer = models.OneToOneField(Farmer, on_delete=models.CASCADE, related_name="credit_line")
    amount = models.DecimalField(_("授信额度"), **MONEY)
    outstanding_principal = models.DecimalField(_("未还本金"), default=Decimal("0.00"), **MONEY)
    grade = models.CharField(_("等级"), max_length=4)
    annual_rate = models.DecimalField(_("年利率"), max_digits=7, decimal_places=6)
    valid_until = models.DateField(_("有效期至"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    suspension = models.CharField(_("冻结原因"), max_length=16, choices=Suspension.choices, blank=True, default="")
    assessment = models.ForeignKey(CreditAssessment, null=True, on_delete=models.SET_NULL, related_name="+")
    business_date = models.DateField(_("业务日期"))
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        verbose_name = _("授信额度")
        verbose_name_plural = _("授信额度")
        indexes = [models.Index(fields=["updated_at", "id"], name="creditline_updated")]

    @property
    def available(self) -> Decimal:
        if self.status != self.Status.ACTIVE:
            return Decimal("0.00")
        return max(self.amount - self.outstanding_principal, Decimal("0.00"))
