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
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_scorecard"
            )
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
        constraints = [models.UniqueConstraint(fields=["business_date", "farmer"], name="assessment_unique_per_day")]


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


# --- The loan lifecycle ----------------------------------------------------------------------------

RATE = {"max_digits": 9, "decimal_places": 6}


def default_terms() -> list[int]:
    return [3, 6, 9, 12]


def default_methods() -> list[str]:
    return ["equal_installment", "equal_principal", "interest_only", "bullet"]


def default_allocation() -> list[str]:
    return ["penalty", "interest", "principal"]


class LoanSettings(models.Model):
    """The county's loan rules (one row, pk=1): products offered, penalty, allocation order and
    the days-past-due bands of the five-category classification (五级分类)."""

    terms = ArrayField(models.PositiveSmallIntegerField(), default=default_terms, verbose_name=_("可选期限（月）"))
    methods = ArrayField(models.CharField(max_length=24), default=default_methods, verbose_name=_("还款方式"))
    # Penalty rate = contract rate × (1 + markup): 0.50 is "contract rate + 50%".
    penalty_markup = models.DecimalField(_("罚息上浮比例"), default=Decimal("0.50"), max_digits=5, decimal_places=4)
    allocation_order = ArrayField(
        models.CharField(max_length=16), default=default_allocation, verbose_name=_("还款冲抵顺序")
    )
    # Lowest days past due of each band; below special_mention_from is 正常.
    special_mention_from = models.PositiveIntegerField(_("关注类起始逾期天数"), default=1)
    substandard_from = models.PositiveIntegerField(_("次级类起始逾期天数"), default=91)
    doubtful_from = models.PositiveIntegerField(_("可疑类起始逾期天数"), default=181)
    loss_from = models.PositiveIntegerField(_("损失类起始逾期天数"), default=361)
    updated_by = models.CharField(_("修改人"), max_length=150, blank=True)
    updated_at = models.DateTimeField(_("修改时间"), auto_now=True)

    class Meta:
        verbose_name = _("贷款规则")
        verbose_name_plural = _("贷款规则")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(special_mention_from__gte=1)
                & models.Q(substandard_from__gt=models.F("special_mention_from"))
                & models.Q(doubtful_from__gt=models.F("substandard_from"))
                & models.Q(loss_from__gt=models.F("doubtful_from")),
                name="loan_settings_bands_ascending",
            )
        ]


class Loan(models.Model):
    """One drawdown from a credit line. Balances on the row are kept equal to the ledger by the
    services that post both in one transaction (tests check it)."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("还款中")
        CLOSED = "closed", _("已结清")
        WRITTEN_OFF = "written_off", _("已核销")

    class Classification(models.TextChoices):
        NORMAL = "normal", _("正常")
        SPECIAL_MENTION = "special_mention", _("关注")
        SUBSTANDARD = "substandard", _("次级")
        DOUBTFUL = "doubtful", _("可疑")
        LOSS = "loss", _("损失")

    class Disbursement(models.TextChoices):
        REQUESTED = "requested", _("待放款")
        CONFIRMED = "confirmed", _("已放款")

    farmer = models.ForeignKey(Farmer, on_delete=models.PROTECT, related_name="loans")
    line = models.ForeignKey(CreditLine, on_delete=models.PROTECT, related_name="loans")
    partner = models.ForeignKey("platform.LendingPartner", on_delete=models.PROTECT, related_name="+")
    principal = models.DecimalField(_("借款金额"), **MONEY)
    annual_rate = models.DecimalField(_("年利率"), **RATE)
    penalty_rate = models.DecimalField(_("罚息年利率"), **RATE)
    # Share of interest the county pays (贴息), fixed at drawdown from the programme in force.
    subsidy_share = models.DecimalField(_("贴息比例"), default=Decimal("0"), max_digits=5, decimal_places=4)
    subsidy_programme = models.ForeignKey(
        "InterestSubsidyProgramme", null=True, blank=True, on_delete=models.PROTECT, related_name="loans"
    )
    term_months = models.PositiveSmallIntegerField(_("期限（月）"))
    method = models.CharField(_("还款方式"), max_length=24)
    start_date = models.DateField(_("放款日"))
    maturity_date = models.DateField(_("到期日"))
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    disbursement = models.CharField(
        _("放款状态"), max_length=16, choices=Disbursement.choices, default=Disbursement.REQUESTED
    )
    disbursed_at = models.DateTimeField(_("放款时间"), null=True, blank=True)
    partner_reference = models.CharField(_("合作机构流水号"), max_length=64, blank=True)
    outstanding_principal = models.DecimalField(_("未还本金"), **MONEY)
    # Interest and penalty that have fallen due (or accrued, for penalty) and are unpaid.
    interest_due = models.DecimalField(_("应收未收利息"), default=Decimal("0.00"), **MONEY)
    subsidy_due = models.DecimalField(_("应收贴息"), default=Decimal("0.00"), **MONEY)
    penalty_due = models.DecimalField(_("应收未收罚息"), default=Decimal("0.00"), **MONEY)
    days_past_due = models.PositiveIntegerField(_("逾期天数"), default=0)
    max_days_past_due = models.PositiveIntegerField(_("最长逾期天数"), default=0)
    classification = models.CharField(
        _("五级分类"), max_length=16, choices=Classification.choices, default=Classification.NORMAL
    )
    last_closed_date = models.DateField(_("最近日终日期"))
    closed_on = models.DateField(_("结清日期"), null=True, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("贷款")
        verbose_name_plural = _("贷款")
        indexes = [
            models.Index(fields=["farmer", "status"], name="loan_farmer_status"),
            # Not on last_closed_date: the nightly close moves it on every open loan, and an
            # indexed column would make each of those million updates rewrite the indexes too
            # (no HOT update); with the table's fillfactor of 80 they stay on their page.
            models.Index(fields=["status"], name="loan_status"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(outstanding_principal__gte=0), name="loan_outstanding_nonneg"),
            models.CheckConstraint(condition=models.Q(principal__gte=Decimal("1.00")), name="loan_principal_positive"),
        ]

    def __str__(self) -> str:
        return f"loan {self.pk} ({self.principal})"


class Installment(models.Model):
    """One period of a loan's schedule. A prepayment cancels the remaining periods and adds
    the rebuilt ones (``superseded``), so the history stays readable."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", _("未到期")
        DUE = "due", _("已到期")
        OVERDUE = "overdue", _("已逾期")
        PAID = "paid", _("已还清")
        SUPERSEDED = "superseded", _("已重排")

    loan = models.ForeignKey(Loan, on_delete=models.CASCADE, related_name="installments")
    number = models.PositiveSmallIntegerField(_("期数"))
    due_date = models.DateField(_("还款日"))
    principal = models.DecimalField(_("应还本金"), **MONEY)
    interest = models.DecimalField(_("应还利息"), **MONEY)
    subsidy = models.DecimalField(_("贴息"), default=Decimal("0.00"), **MONEY)
    principal_paid = models.DecimalField(_("已还本金"), default=Decimal("0.00"), **MONEY)
    interest_paid = models.DecimalField(_("已还利息"), default=Decimal("0.00"), **MONEY)
    status = models.CharField(_("状态"), max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    paid_on = models.DateField(_("还清日期"), null=True, blank=True)

    class Meta:
        ordering = ["due_date", "id"]
        indexes = [models.Index(fields=["due_date", "status"], name="installment_due")]

    @property
    def farmer_interest(self) -> Decimal:
        """The interest the farmer pays: the period's interest less the county's subsidy."""
        return self.interest - self.subsidy

    @property
    def payment(self) -> Decimal:
        return self.principal + self.farmer_interest


class Repayment(models.Model):
    """Money received for a loan and how it was allocated (penalty, interest, principal)."""

    class Kind(models.TextChoices):
        SCHEDULED = "scheduled", _("按期还款")
        PREPAYMENT = "prepayment", _("提前部分还款")
        PAYOFF = "payoff", _("提前结清")

    loan = models.ForeignKey(Loan, on_delete=models.PROTECT, related_name="repayments")
    kind = models.CharField(_("类型"), max_length=16, choices=Kind.choices)
    amount = models.DecimalField(_("金额"), **MONEY)
    to_penalty = models.DecimalField(_("冲抵罚息"), default=Decimal("0.00"), **MONEY)
    to_interest = models.DecimalField(_("冲抵利息"), default=Decimal("0.00"), **MONEY)
    to_principal = models.DecimalField(_("冲抵本金"), default=Decimal("0.00"), **MONEY)
    business_date = models.DateField(_("业务日期"))
    channel = models.CharField(_("渠道"), max_length=16)  # mobile, partner, official
    partner_reference = models.CharField(_("合作机构流水号"), max_length=64, blank=True)
    prepayment_mode = models.CharField(_("提前还款方式"), max_length=24, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount=models.F("to_penalty") + models.F("to_interest") + models.F("to_principal")),
                name="repayment_fully_allocated",
            ),
            models.UniqueConstraint(
                fields=["loan", "partner_reference"],
                condition=~models.Q(partner_reference=""),
                name="repayment_partner_reference_once",
            ),
        ]


class Account(models.TextChoices):
    """The ledger's accounts. Debit-normal: receivables and expenses; credit-normal: income and
    the settlement account with the lending partner (what the partner has advanced)."""

    LOANS_RECEIVABLE = "loans_receivable", _("贷款本金")
    INTEREST_RECEIVABLE = "interest_receivable", _("应收利息")
    SUBSIDY_RECEIVABLE = "subsidy_receivable", _("应收贴息")
    PENALTY_RECEIVABLE = "penalty_receivable", _("应收罚息")
    INTEREST_INCOME = "interest_income", _("利息收入")
    PENALTY_INCOME = "penalty_income", _("罚息收入")
    PARTNER_SETTLEMENT = "partner_settlement", _("合作机构清算")
    COMPENSATION_RECEIVABLE = "compensation_receivable", _("应收风险补偿")
    WRITE_OFF_EXPENSE = "write_off_expense", _("核销损失")


class JournalEntry(models.Model):
    """One balanced double-entry posting (append-only)."""

    class Kind(models.TextChoices):
        DISBURSEMENT = "disbursement", _("放款")
        INTEREST_DUE = "interest_due", _("利息到期")
        INTEREST_ADJUSTMENT = "interest_adjustment", _("利息调整")
        PENALTY = "penalty", _("罚息")
        REPAYMENT = "repayment", _("还款")
        SUBSIDY_RECEIVED = "subsidy_received", _("贴息到账")
        WRITE_OFF = "write_off", _("核销")

    kind = models.CharField(_("类型"), max_length=24, choices=Kind.choices)
    loan = models.ForeignKey(Loan, on_delete=models.PROTECT, related_name="journal_entries", null=True)
    business_date = models.DateField(_("业务日期"))
    memo = models.CharField(_("摘要"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("记账时间"), auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["business_date", "kind"], name="journal_day_kind")]


class JournalLine(models.Model):
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="lines")
    # Denormalised from the entry so per-loan balances are one indexed scan.
    loan = models.ForeignKey(Loan, on_delete=models.PROTECT, related_name="+", null=True)
    account = models.CharField(_("科目"), max_length=32, choices=Account.choices)
    debit = models.DecimalField(_("借方"), default=Decimal("0.00"), **MONEY)
    credit = models.DecimalField(_("贷方"), default=Decimal("0.00"), **MONEY)

    class Meta:
        indexes = [models.Index(fields=["loan", "account"], name="journal_line_loan_account")]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(debit__gte=0) & models.Q(credit=0)) | (models.Q(debit=0) & models.Q(credit__gte=0)),
                name="journal_line_one_side",
            )
        ]


class OutboxMessage(models.Model):
    """Transactional outbox: written in the transaction of the change it reports, delivered to
    the lending partner later (drawdown requested, repayment debit due, line changed, overdue)."""

    topic = models.CharField(_("主题"), max_length=48)
    partner = models.ForeignKey("platform.LendingPartner", on_delete=models.PROTECT, related_name="+")
    loan = models.ForeignKey(Loan, null=True, blank=True, on_delete=models.PROTECT, related_name="outbox")
    payload = models.JSONField(_("内容"))
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    attempts = models.PositiveIntegerField(_("投递次数"), default=0)
    next_attempt_at = models.DateTimeField(_("下次投递"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("投递时间"), null=True, blank=True)
    dead_lettered_at = models.DateTimeField(_("进入死信时间"), null=True, blank=True)
    last_error = models.TextField(_("最近错误"), blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["created_at"], name="outbox_pending", condition=models.Q(delivered_at__isnull=True))
        ]


class IdempotencyRecord(models.Model):
    """The first result of a write that a farmer or partner may repeat. A repeat with the same
    key returns it; a repeat while the first is still running is refused (HTTP 409)."""

    scope = models.CharField(_("范围"), max_length=64)  # e.g. "farmer:12", "partner:3"
    key = models.CharField(_("幂等键"), max_length=128)
    operation = models.CharField(_("操作"), max_length=48)
    request_hash = models.CharField(max_length=64)
    completed = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True)
    response = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_once")]


# --- County programmes -----------------------------------------------------------------------------


class InterestSubsidyProgramme(models.Model):
    """贴息: the county pays ``share`` of the interest of loans drawn while the programme runs by
    farmers who meet ``eligibility`` (feature conditions on the line's assessment, e.g.
    ``{"poverty_monitored": 1}``); an empty condition means every farmer."""

    name = models.CharField(_("名称"), max_length=100)
    share = models.DecimalField(_("贴息比例"), max_digits=5, decimal_places=4)
    eligibility = models.JSONField(_("条件"), default=dict)
    starts_on = models.DateField(_("开始日期"))
    ends_on = models.DateField(_("结束日期"))
    created_by = models.CharField(_("创建人"), max_length=150)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("贴息项目")
        verbose_name_plural = _("贴息项目")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(share__gt=0) & models.Q(share__lte=1), name="subsidy_share_fraction"
            ),
            models.CheckConstraint(condition=models.Q(ends_on__gte=models.F("starts_on")), name="subsidy_dates"),
        ]


class RiskCompensationFund(models.Model):
    """风险补偿基金 (one row, pk=1): the county bears ``share`` of the principal written off, paid
    from the fund's balance."""

    share = models.DecimalField(_("分担比例"), max_digits=5, decimal_places=4, default=Decimal("0.5000"))
    balance = models.DecimalField(_("基金余额"), default=Decimal("0.00"), **MONEY)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(share__gte=0) & models.Q(share__lte=1), name="fund_share_fraction"
            )
        ]


class FundMovement(models.Model):
    """Append-only: deposits into the fund and claims paid from it."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", _("注资")
        CLAIM = "claim", _("代偿")

    kind = models.CharField(_("类型"), max_length=16, choices=Kind.choices)
    amount = models.DecimalField(_("金额"), **MONEY)
    loan = models.ForeignKey(Loan, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    balance_after = models.DecimalField(_("余额"), **MONEY)
    business_date = models.DateField(_("业务日期"))
    actor = models.CharField(_("操作人"), max_length=150)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True)


class DisasterPause(models.Model):
    """An official's pause of penalties and overdue classification for chosen townships over a
    period (e.g. after a flood). Lifting it early is recorded, not a delete."""

    townships = models.ManyToManyField("counties.Township", related_name="disaster_pauses")
    starts_on = models.DateField(_("开始日期"))
    ends_on = models.DateField(_("结束日期"))
    reason = models.CharField(_("原因"), max_length=200)
    created_by = models.CharField(_("创建人"), max_length=150)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    lifted_on = models.DateField(_("提前解除日期"), null=True, blank=True)
    lifted_by = models.CharField(_("解除人"), max_length=150, blank=True)

    class Meta:
        verbose_name = _("灾害暂停")
        verbose_name_plural = _("灾害暂停")
        constraints = [
            models.CheckConstraint(condition=models.Q(ends_on__gte=models.F("starts_on")), name="pause_dates")
        ]
