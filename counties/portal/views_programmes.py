"""County programmes: interest subsidy (贴息) programmes and their monthly report, the risk
compensation fund (balance, deposits, claims, write-offs of 损失 loans) and disaster pauses of
penalties. Every write is a :mod:`loans.programmes` service; administrators and risk officers
write, auditors read."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from counties.portal.auth import official_required
from counties.portal.forms import AmountOnForm, DateOnForm, DisasterPauseForm, SubsidyProgrammeForm
from counties.portal.nav import PROGRAMME_ROLES, PROGRAMME_WRITE_ROLES, portal_page
from loans import programmes as services
from loans.models import DisasterPause, FundMovement, InterestSubsidyProgramme, Loan

SECTION = "portal-programmes"
MOVEMENTS_SHOWN = 50
# The forms of the page, by the ``action`` each posts.
ACTIONS = ("subsidy_create", "subsidy_receive", "fund_deposit", "pause_create")


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _year(request: HttpRequest) -> int:
    try:
        year = int(request.GET.get("year", ""))
    except ValueError:
        return timezone.localdate().year
    return year if 2000 <= year <= 2100 else timezone.localdate().year


def _forms(data=None, action: str = "") -> dict:
    today = timezone.localdate()
    bound = {name: data if name == action else None for name in ACTIONS}
    return {
        "subsidy_form": SubsidyProgrammeForm(bound["subsidy_create"], prefix="subsidy"),
        "receive_form": AmountOnForm(bound["subsidy_receive"], prefix="receive", initial={"on": today}),
        "deposit_form": AmountOnForm(bound["fund_deposit"], prefix="deposit", initial={"on": today}),
        "pause_form": DisasterPauseForm(bound["pause_create"], prefix="pause"),
    }


def _run(request: HttpRequest, action: str, form) -> str | None:
    """Call the service behind ``action`` with the valid ``form``; the success message, or
    None with the refusal put on the form."""
    data, actor = form.cleaned_data, _actor(request)
    try:
        if action == "subsidy_create":
            programme = services.subsidy_programme_create(
                name=data["name"], share=data["share"].strip(), eligibility=form.eligibility(),
                starts_on=data["starts_on"], ends_on=data["ends_on"], actor=actor,
            )
            return _("已创建贴息项目“%(name)s”。") % {"name": programme.name}
        if action == "subsidy_receive":
            services.subsidy_receive(amount=data["amount"].strip(), on=data["on"], actor=actor)
            return _("已记录县财政贴息到账 %(amount)s 元。") % {"amount": data["amount"].strip()}
        if action == "fund_deposit":
            movement = services.fund_deposit(amount=data["amount"].strip(), on=data["on"], actor=actor)
            return _("已注资 %(amount)s 元，基金余额 %(balance)s 元。") % {
                "amount": f"{movement.amount:,}", "balance": f"{movement.balance_after:,}",
            }
        pause = services.disaster_pause_create(
            township_ids=[township.pk for township in data["townships"]], starts_on=data["starts_on"],
            ends_on=data["ends_on"], reason=data["reason"], actor=actor,
        )
        return _("已暂停 %(start)s 至 %(end)s 的罚息和逾期天数累计。") % {"start": pause.starts_on, "end": pause.ends_on}
    except ValidationError as error:
        form.add_error(None, error)
        return None


@official_required(roles=PROGRAMME_ROLES)
def programmes(request: HttpRequest) -> HttpResponse:
    """The page; a POST (a writer's: auditors are refused by the decorator) runs one form's
    service and redirects, or shows the form again with the refusal."""
    forms = _forms()
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action not in ACTIONS:
            messages.error(request, _("未知的操作。"))
            return redirect(SECTION)
        forms = _forms(request.POST, action)
        form = forms[{"subsidy_create": "subsidy_form", "subsidy_receive": "receive_form",
                      "fund_deposit": "deposit_form", "pause_create": "pause_form"}[action]]
        if form.is_valid():
            done = _run(request, action, form)
            if done is not None:
                messages.success(request, done)
                return redirect(reverse(SECTION) + f"#{action.split('_')[0]}")
    year = _year(request)
    report = services.subsidy_monthly_report(year=year)
    fund = services.fund_statement()
    return portal_page(
        request,
        "counties/portal/programmes.html",
        {
            **forms,
            "can_write": request.official.role in PROGRAMME_WRITE_ROLES,
            "year": year,
            "years": range(timezone.localdate().year + 1, timezone.localdate().year - 6, -1),
            "programmes": InterestSubsidyProgramme.objects.annotate(loans_count=Count("loans")).order_by("-starts_on", "-id"),
            "report": report,
            "report_total": {
                "accrued": sum((row["accrued"] for row in report), services.ZERO),
                "received": sum((row["received"] for row in report), services.ZERO),
            },
            "subsidy_outstanding": services.subsidy_outstanding(),
            "fund": {**fund, "movements": fund["movements"][:MOVEMENTS_SHOWN]},
            "movement_kinds": dict(FundMovement.Kind.choices),
            "loss_loans": Loan.objects.filter(status=Loan.Status.ACTIVE, classification=Loan.Classification.LOSS)
            .select_related("farmer__village__township")
            .order_by("-outstanding_principal", "id"),
            "pauses": DisasterPause.objects.prefetch_related("townships").order_by("-starts_on", "-id"),
            "today": timezone.localdate(),
        },
        section=SECTION,
    )


def _back(request: HttpRequest, fallback: str) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect(fallback)


@official_required(roles=PROGRAMME_WRITE_ROLES)
@require_POST
def loan_write_off(request: HttpRequest, loan_id: int) -> HttpResponse:
    """Write off a 损失 loan (from this page or the loans page): the fund pays its share."""
    loan = get_object_or_404(Loan, pk=loan_id)
    form = DateOnForm(request.POST or {"on": timezone.localdate()})
    on = form.cleaned_data["on"] if form.is_valid() else timezone.localdate()
    try:
        movement = services.loan_write_off(loan=loan, on=on, actor=_actor(request))
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(
            request,
            _("已核销借款 #%(loan)s，风险补偿基金代偿 %(claim)s 元。") % {"loan": loan.pk, "claim": f"{movement.amount:,}"},
        )
    return _back(request, reverse(SECTION) + "#fund")


@official_required(roles=PROGRAMME_WRITE_ROLES)
@require_POST
def pause_lift(request: HttpRequest, pause_id: int) -> HttpResponse:
    pause = get_object_or_404(DisasterPause, pk=pause_id)
    form = DateOnForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("请填写解除日期。"))
        return redirect(reverse(SECTION) + "#pause")
    try:
        services.disaster_pause_lift(pause=pause, on=form.cleaned_data["on"], actor=_actor(request))
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, _("已解除暂停，自 %(day)s 起恢复计算罚息。") % {"day": form.cleaned_data["on"]})
    return redirect(reverse(SECTION) + "#pause")
