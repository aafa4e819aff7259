"""Reads of the county schema."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from django.core.paginator import Paginator
from django.db.models import Count, DecimalField, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from counties.models import (
    Farmer,
    Household,
    NightlyRun,
    PortfolioDailyStat,
    Township,
    TownshipDailyStat,
    Village,
)


def county_summary() -> dict[str, object]:
    return {
        "townships": Township.objects.count(),
        "villages": Village.objects.count(),
        "households": Household.objects.count(),
        "farmers": Farmer.objects.count(),
        "last_run": NightlyRun.objects.order_by("-business_date").first(),
    }


def farmer_search(*, name: str, limit: int = 50) -> QuerySet[Farmer]:
    """Farmers whose name starts with ``name`` (exact ID/phone lookups come through the blind
    index in data_sharing)."""
    return (
        Farmer.objects.filter(name__startswith=name.strip())
        .select_related("village__township")
        .order_by("name", "id")[:limit]
    )


def township_farmer_counts() -> QuerySet[Township]:
    return Township.objects.annotate(farmer_count=Count("villages__farmers")).order_by("code")


# --- The officials' portal ------------------------------------------------------------------
# Every portal read takes ``township_id``: None for the whole county, a township's id for a
# township officer (their scope) or a county official's drill-down.

NPL_CLASSIFICATIONS = ("substandard", "doubtful", "loss")  # 次级 + 可疑 + 损失
ZERO = Decimal("0.00")
RATIO_PLACES = Decimal("0.0001")


def ratio(numerator: int | Decimal, denominator: int | Decimal) -> Decimal | None:
    """``numerator / denominator`` to four places, rounded half up; None when nothing to divide by."""
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(RATIO_PLACES, rounding=ROUND_HALF_UP)


@dataclass
class Figures:
    """The dashboard's figures for one area (a village, a township, the county).

    * coverage: farmers with an ACTIVE consent ÷ registered farmers; farmers with an ACTIVE
      credit line ÷ registered farmers;
    * lines granted: ACTIVE lines (count, amount); used: their outstanding principal;
    * loan balance: outstanding principal of open (``active``) loans; overdue ratio: the balance
      of those with days past due > 0 ÷ loan balance; NPL ratio: the balance classified 次级,
      可疑 or 损失 ÷ loan balance.
    """

    registered: int = 0
    consented: int = 0
    lined: int = 0
    lines_amount: Decimal = ZERO
    lines_used: Decimal = ZERO
    loans: int = 0
    loan_balance: Decimal = ZERO
    overdue_balance: Decimal = ZERO
    npl_balance: Decimal = ZERO

    COUNTS = ("registered", "consented", "lined", "loans")
    AMOUNTS = ("lines_amount", "lines_used", "loan_balance", "overdue_balance", "npl_balance")

    def add(self, other: Figures) -> None:
        for name in (*self.COUNTS, *self.AMOUNTS):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def consent_coverage(self) -> Decimal | None:
        return ratio(self.consented, self.registered)

    @property
    def line_coverage(self) -> Decimal | None:
        return ratio(self.lined, self.registered)

    @property
    def utilisation(self) -> Decimal | None:
        return ratio(self.lines_used, self.lines_amount)

    @property
    def overdue_ratio(self) -> Decimal | None:
        return ratio(self.overdue_balance, self.loan_balance)

    @property
    def npl_ratio(self) -> Decimal | None:
        return ratio(self.npl_balance, self.loan_balance)

    RATIOS = ("consent_coverage", "line_coverage", "utilisation", "overdue_ratio", "npl_ratio")

    @property
    def pct(self) -> dict[str, str]:
        """The ratios as percentages for pages ("12.34%", "—" for a ratio of nothing)."""
        values = {name: getattr(self, name) for name in self.RATIOS}
        return {name: "—" if value is None else f"{value * 100:.2f}%" for name, value in values.items()}

    def as_json(self) -> dict[str, object]:
        """Money and ratios as decimal strings (exact); None for a ratio of nothing."""
        data: dict[str, object] = {name: getattr(self, name) for name in self.COUNTS}
        data |= {name: str(getattr(self, name)) for name in self.AMOUNTS}
        for name in self.RATIOS:
            value = getattr(self, name)
            data[name] = None if value is None else str(value)
        return data


@dataclass
class AreaFigures:
    code: str
    name: str
    figures: Figures = field(default_factory=Figures)
    township_code: str = ""


@dataclass
class Dashboard:
    total: Figures
    townships: list[AreaFigures]
    villages: list[AreaFigures]  # of ``village_township`` only (None: none asked for)
    village_township: Township | None


def _in_scope(queryset: QuerySet, farmer_path: str, township_id: int | None) -> QuerySet:
    if township_id is None:
        return queryset
    return queryset.filter(**{f"{farmer_path}village__township_id": township_id})


def _figures_by_village(township_id: int | None) -> dict[int, Figures]:
    """Four grouped scans (roster, consents, lines, loans), each by the farmer's village."""
    from data_sharing.models import Consent
    from loans.models import CreditLine, Loan

    by_village: dict[int, Figures] = defaultdict(Figures)
    for row in _in_scope(Farmer.objects.all(), "", township_id).values("village_id").annotate(n=Count("id")):
        by_village[row["village_id"]].registered = row["n"]
    consents = _in_scope(Consent.objects.filter(status=Consent.Status.ACTIVE), "farmer__", township_id)
    for row in consents.values("farmer__village_id").annotate(n=Count("farmer_id", distinct=True)):
        by_village[row["farmer__village_id"]].consented = row["n"]
    lines = _in_scope(CreditLine.objects.filter(status=CreditLine.Status.ACTIVE), "farmer__", township_id)
    for row in lines.values("farmer__village_id").annotate(
        n=Count("id"), amount=Sum("amount"), used=Sum("outstanding_principal")
    ):
        figures = by_village[row["farmer__village_id"]]
        figures.lined, figures.lines_amount, figures.lines_used = row["n"], row["amount"], row["used"]
    loans = _in_scope(Loan.objects.filter(status=Loan.Status.ACTIVE), "farmer__", township_id)
    for row in loans.values("farmer__village_id").annotate(
        n=Count("id"),
        balance=Sum("outstanding_principal"),
        overdue=Coalesce(Sum("outstanding_principal", filter=Q(days_past_due__gt=0)), ZERO, output_field=DecimalField()),
        npl=Coalesce(
            Sum("outstanding_principal", filter=Q(classification__in=NPL_CLASSIFICATIONS)), ZERO, output_field=DecimalField()
        ),
    ):
        figures = by_village[row["farmer__village_id"]]
        figures.loans, figures.loan_balance = row["n"], row["balance"]
        figures.overdue_balance, figures.npl_balance = row["overdue"], row["npl"]
    return by_village


def dashboard(*, township_id: int | None = None, villages_of: Township | None = None) -> Dashboard:
    """The figures for the county (or one township), per township, and per village of
    ``villages_of`` (a township officer's own township, or the one a county official opened)."""
    by_village = _figures_by_village(township_id)
    townships = Township.objects.order_by("code")
    if township_id is not None:
        townships = townships.filter(pk=township_id)
    areas = {township.pk: AreaFigures(code=township.code, name=township.name) for township in townships}
    village_rows = []
    village_qs = Village.objects.filter(township_id__in=list(areas)).select_related("township").order_by("code")
    for village in village_qs:
        figures = by_village.get(village.pk, Figures())
        areas[village.township_id].figures.add(figures)
        if villages_of is not None and village.township_id == villages_of.pk:
            village_rows.append(
                AreaFigures(code=village.code, name=village.name, figures=figures, township_code=village.township.code)
            )
    total = Figures()
    for area in areas.values():
        total.add(area.figures)
    return Dashboard(total=total, townships=list(areas.values()), villages=village_rows, village_township=villages_of)


def dashboard_history(*, township_id: int | None = None, days: int = 120) -> list[dict[str, object]]:
    """Per business date (oldest first, the newest ``days`` dates): registered farmers from
    TownshipDailyStat and the credit figures from PortfolioDailyStat, summed over the scope.
    A figure missing for a date (a step that had not run yet) is None."""
    registered_qs = TownshipDailyStat.objects.all()
    portfolio_qs = PortfolioDailyStat.objects.all()
    if township_id is not None:
        registered_qs = registered_qs.filter(township_id=township_id)
        portfolio_qs = portfolio_qs.filter(township_id=township_id)
    dates = sorted(
        set(registered_qs.values_list("business_date", flat=True).distinct())
        | set(portfolio_qs.values_list("business_date", flat=True).distinct())
    )[-days:]
    if not dates:
        return []
    registered = dict(
        registered_qs.filter(business_date__in=dates).values("business_date").annotate(n=Sum("farmers")).values_list(
            "business_date", "n"
        )
    )
    amounts = {
        row["business_date"]: row
        for row in portfolio_qs.filter(business_date__in=dates)
        .values("business_date")
        .annotate(
            consented=Sum("consented_farmers"), lined=Sum("lined_farmers"), lines_amount=Sum("lines_amount"),
            lines_used=Sum("lines_used"), loans=Sum("loans"), loan_balance=Sum("loan_balance"),
            overdue_balance=Sum("overdue_balance"), npl_balance=Sum("npl_balance"),
        )
    }
    history = []
    for day in dates:
        point: dict[str, object] = {"business_date": day.isoformat(), "registered": registered.get(day)}
        stats = amounts.get(day)
        if stats is None:
            history.append(point)
            continue
        figures = Figures(
            registered=registered.get(day) or 0,
            consented=stats["consented"], lined=stats["lined"], lines_amount=stats["lines_amount"],
            lines_used=stats["lines_used"], loans=stats["loans"], loan_balance=stats["loan_balance"],
            overdue_balance=stats["overdue_balance"], npl_balance=stats["npl_balance"],
        )
        data = figures.as_json()
        if day not in registered:  # no roster count that day: coverage cannot be computed
            data["registered"] = data["consent_coverage"] = data["line_coverage"] = None
        history.append({"business_date": day.isoformat(), **data})
    return history


# --- The loan book ----------------------------------------------------------------------------


@dataclass
class ClassificationRow:
    code: str
    name: str
    by_class: dict[str, tuple[int, Decimal]]  # classification → (loans, balance)
    loans: int = 0
    balance: Decimal = ZERO

    @property
    def cells(self) -> list[dict[str, object]]:
        """The classifications in order (正常 … 损失) with their loans and balance."""
        return [{"code": code, "loans": n, "balance": balance} for code, (n, balance) in self.by_class.items()]


def loan_classification_matrix(*, township_id: int | None = None) -> tuple[list[ClassificationRow], ClassificationRow]:
    """Open loans' balances by township × five-category classification, with a total row."""
    from loans.models import Loan

    classes = list(Loan.Classification.values)
    townships = Township.objects.order_by("code")
    if township_id is not None:
        townships = townships.filter(pk=township_id)
    rows = {
        township.pk: ClassificationRow(township.code, township.name, {code: (0, ZERO) for code in classes})
        for township in townships
    }
    total = ClassificationRow("", "", {code: (0, ZERO) for code in classes})
    loans = _in_scope(Loan.objects.filter(status=Loan.Status.ACTIVE), "farmer__", township_id)
    for row in loans.values("farmer__village__township_id", "classification").annotate(
        n=Count("id"), balance=Sum("outstanding_principal")
    ):
        target = rows.get(row["farmer__village__township_id"])
        if target is None:
            continue
        for item in (target, total):
            count, balance = item.by_class[row["classification"]]
            item.by_class[row["classification"]] = (count + row["n"], balance + row["balance"])
            item.loans += row["n"]
            item.balance += row["balance"]
    return list(rows.values()), total


def loans_list(
    *, township_id: int | None = None, classification: str = "", township_code: str = "", overdue_only: bool = False
) -> QuerySet:
    """Open loans, most days past due first, then largest balance."""
    from loans.models import Loan

    loans = _in_scope(Loan.objects.filter(status=Loan.Status.ACTIVE), "farmer__", township_id)
    if classification:
        loans = loans.filter(classification=classification)
    if township_code:
        loans = loans.filter(farmer__village__township__code=township_code)
    if overdue_only:
        loans = loans.filter(days_past_due__gt=0)
    return loans.select_related("farmer__village__township").order_by("-days_past_due", "-outstanding_principal", "id")


# --- Nightly runs ----------------------------------------------------------------------------


@dataclass
class NightlyRunView:
    run: NightlyRun
    assessment: object | None  # loans.models.AssessmentRun of the same business date

    @property
    def seconds(self) -> float | None:
        if self.run.started_at and self.run.finished_at:
            return round((self.run.finished_at - self.run.started_at).total_seconds(), 1)
        return None

    @property
    def failed_steps(self) -> list[str]:
        return [step["name"] for step in self.run.steps if step.get("status") == "failed"]


def nightly_runs(*, page: int | str | None = 1, per_page: int = 30):
    """NightlyRun rows newest first, a page at a time, each with its credit AssessmentRun."""
    from loans.models import AssessmentRun

    paginator = Paginator(NightlyRun.objects.order_by("-business_date"), per_page)
    page_obj = paginator.get_page(page)
    dates = [run.business_date for run in page_obj.object_list]
    assessments = {run.business_date: run for run in AssessmentRun.objects.filter(business_date__in=dates)}
    page_obj.object_list = [NightlyRunView(run, assessments.get(run.business_date)) for run in page_obj.object_list]
    return page_obj


def nightly_run_view(*, business_date) -> NightlyRunView | None:
    from loans.models import AssessmentRun

    run = NightlyRun.objects.filter(business_date=business_date).first()
    if run is None:
        return None
    return NightlyRunView(run, AssessmentRun.objects.filter(business_date=business_date).first())


CREDIT_STEP = "loans.nightly.credit_assessment_run"


def nightly_progress(*, view: NightlyRunView) -> dict[str, object]:
    """How far a run is: steps done of ``settings.NIGHTLY_STEPS``, the step now running and,
    while the credit step runs, its chunks (AssessmentRun.chunks_done / chunks_total)."""
    from django.conf import settings

    run, assessment = view.run, view.assessment
    planned = list(settings.NIGHTLY_STEPS)
    # A queued run still holds the previous attempt's steps until the worker starts it afresh.
    queued = run.status == NightlyRun.Status.QUEUED
    done = [] if queued else [step for step in run.steps if step.get("status") == "succeeded"]
    finished = run.status in (NightlyRun.Status.SUCCEEDED, NightlyRun.Status.FAILED)
    current = planned[len(run.steps)] if run.status == NightlyRun.Status.RUNNING and len(run.steps) < len(planned) else ""
    chunks_done = 0 if queued else getattr(assessment, "chunks_done", 0) or 0
    chunks_total = 0 if queued else getattr(assessment, "chunks_total", 0) or 0
    fraction = Decimal(len(done))
    if current == CREDIT_STEP and chunks_total:
        fraction += Decimal(chunks_done) / Decimal(chunks_total)
    if run.status == NightlyRun.Status.SUCCEEDED:
        fraction = Decimal(len(planned))
    percent = int((fraction * 100 / len(planned)).to_integral_value(rounding=ROUND_FLOOR)) if planned else 100
    return {
        "business_date": run.business_date.isoformat(),
        "status": run.status,
        "status_display": str(run.get_status_display()),
        "finished": finished,
        "attempts": run.attempts,
        "steps_total": len(planned),
        "steps_done": len(done),
        "current_step": current,
        "chunks_done": chunks_done,
        "chunks_total": chunks_total,
        "percent": percent,
        "psi": None if getattr(assessment, "psi", None) is None else str(assessment.psi),
        "psi_warning": bool(getattr(assessment, "psi_warning", False)),
    }


# --- Farmer look-up -----------------------------------------------------------------------------

_ID_RE = re.compile(r"[0-9]{17}[0-9Xx]")
_PHONE_RE = re.compile(r"1[0-9]{10}")


def farmer_lookup_search(
    *, query: str = "", village: str = "", township_id: int | None = None, limit: int = 50
) -> QuerySet[Farmer]:
    """Farmers matching ``query`` — an exact ID number or phone number (through the blind
    index: the plaintext is never searched) or else the start of a name — and ``village`` (a
    village's name, in part, or its exact code); both given narrow each other. Nothing asked
    for, nothing returned."""
    from data_sharing.pii import blind_index, normalize_id_number, normalize_phone

    query, village = query.strip(), village.strip()
    if not query and not village:
        return Farmer.objects.none()
    farmers = _in_scope(Farmer.objects.all(), "", township_id)
    compact = query.replace(" ", "")
    if _ID_RE.fullmatch(compact):
        farmers = farmers.filter(id_number_hash=blind_index(normalize_id_number(compact)))
    elif _PHONE_RE.fullmatch(compact):
        farmers = farmers.filter(phone_hash=blind_index(normalize_phone(compact)))
    elif query:
        farmers = farmers.filter(name__startswith=query)
    if village:
        farmers = farmers.filter(Q(village__code=village) | Q(village__name__contains=village))
    return farmers.select_related("village__township").order_by("name", "id")[:limit]


def farmer_in_scope(*, farmer_id: int, township_id: int | None = None) -> Farmer | None:
    """The farmer, or None if there is none or they live outside the official's township."""
    return _in_scope(Farmer.objects.select_related("village__township"), "", township_id).filter(pk=farmer_id).first()
