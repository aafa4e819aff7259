"""The nightly close: falling due (the same ledger lines as the per-loan service), overdue the
next day, penalty to the fen, the five-category bands at each edge (default and county bands),
idempotent reruns, catch-up equal to single days, lines suspended and released, expiry, the
disaster pause, and a ledger that balances and equals the loans' balances throughout.

Worked figures: 12,000.00 yuan, 12 months, 等额本金, 4.35 % a year, drawn 2026-01-15: 1,000.00
principal a month; interest of period 1 = 12,000 × 0.0435 / 12 = 43.50, due 2026-02-15. The
penalty rate is 0.0435 × 1.5 = 0.06525; a day's penalty on 1,000.00 overdue is
1,000 × 0.06525 / 360 = 0.18125 → 0.18.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import transaction

from counties.models import Township, Village
from loans.close import loan_close_run
from loans.ledger import loan_ledger_balances, unbalanced_entries
from loans.models import (
    Account,
    CreditLine,
    DisasterPause,
    JournalEntry,
    JournalLine,
    Loan,
    LoanSettings,
    OutboxMessage,
)
from loans.programmes import ProgrammeRefused, disaster_pause_create, disaster_pause_lift, subsidy_programme_create
from loans.services import installments_fall_due, loan_drawdown, loan_repay

D = Decimal
START = dt.date(2026, 1, 15)
DUE_1 = dt.date(2026, 2, 15)


def day(offset: int) -> dt.date:
    """DUE_1 + offset days."""
    return DUE_1 + dt.timedelta(days=offset)


def draw(lending, *, amount: str = "12000", method: str = "equal_principal", term: int = 12, farmer=None) -> Loan:
    farmer = farmer or lending.borrower(line="50000.00", rate="0.0435")
    return loan_drawdown(farmer=farmer, amount=amount, term_months=term, method=method, on=START)


def close(business_date: dt.date) -> dict[str, int]:
    return loan_close_run(business_date=business_date)


def fresh(loan: Loan) -> Loan:
    return Loan.objects.get(pk=loan.pk)


def state(loan: Loan) -> tuple:
    loan = fresh(loan)
    return (
        loan.interest_due,
        loan.subsidy_due,
        loan.penalty_due,
        loan.days_past_due,
        loan.max_days_past_due,
        loan.classification,
        loan.last_closed_date,
    )


def statuses(loan: Loan) -> list[str]:
    return list(loan.installments.order_by("number").values_list("status", flat=True))


def ledger(loan: Loan) -> list[tuple]:
    """The loan's journal lines after its disbursement, in posting order, without ids."""
    return list(
        JournalLine.objects.filter(loan=loan)
        .exclude(entry__kind=JournalEntry.Kind.DISBURSEMENT)
        .order_by("id")
        .values_list("entry__kind", "entry__business_date", "entry__memo", "account", "debit", "credit")
    )


def topics(loan: Loan) -> list[tuple]:
    return list(OutboxMessage.objects.filter(loan=loan).order_by("id").values_list("topic", "payload"))


def assert_books_agree(*loans: Loan) -> None:
    """Every entry balances, and each loan's balances equal its ledger balances."""
    assert unbalanced_entries() == []
    balances = loan_ledger_balances(loan_ids=[loan.pk for loan in loans])
    for loan in map(fresh, loans):
        books = balances[loan.pk]
        assert (
            books[Account.LOANS_RECEIVABLE],
            books[Account.INTEREST_RECEIVABLE],
            books[Account.SUBSIDY_RECEIVABLE],
            books[Account.PENALTY_RECEIVABLE],
        ) == (loan.outstanding_principal, loan.interest_due, loan.subsidy_due, loan.penalty_due)


def jump_to(loan: Loan, last_closed: dt.date) -> None:
    """Pretend the close already ran up to ``last_closed`` for this loan (skipping the days
    between: for band edges far from the due date)."""
    Loan.objects.filter(pk=loan.pk).update(last_closed_date=last_closed)


def other_township(farmer, code: str = "410225101", name: str = "三义寨乡") -> Township:
    township, _ = Township.objects.get_or_create(code=code, defaults={"name": name})
    village, _ = Village.objects.get_or_create(code=f"{code}201", township=township, defaults={"name": "西村"})
    type(farmer).objects.filter(pk=farmer.pk).update(village=village)
    return township


# --- Falling due, overdue, penalty -------------------------------------------------------------


def test_an_unpaid_installment_falls_due_then_is_overdue_the_next_day_with_penalty(lending):
    loan = draw(lending)
    assert loan.last_closed_date == START - dt.timedelta(days=1)

    counts = close(DUE_1)

    assert counts == {
        "days": 32,  # 2026-01-15 … 2026-02-15
        "loans_closed": 32,
        "installments_due": 1,
        "installments_overdue": 0,
        "loans_newly_overdue": 0,
        "penalty_entries": 0,
        "reclassified": 0,
        "lines_suspended": 0,
        "lines_expired": 0,
    }
    assert statuses(loan)[:2] == ["due", "scheduled"]
    assert state(loan) == (D("43.50"), D("0.00"), D("0.00"), 0, 0, "normal", DUE_1)
    assert ledger(loan) == [
        ("interest_due", DUE_1, "installment 1", Account.INTEREST_RECEIVABLE, D("43.50"), D("0.00")),
        ("interest_due", DUE_1, "installment 1", Account.INTEREST_INCOME, D("0.00"), D("43.50")),
    ]
    assert topics(loan)[1:] == [
        (
            "repayment.debit_requested",
            {"loan_id": loan.pk, "installment": 1, "due_date": "2026-02-15", "amount": "1043.50"},
        )
    ]

    counts = close(day(1))

    assert (counts["installments_overdue"], counts["loans_newly_overdue"], counts["penalty_entries"]) == (1, 1, 1)
    assert (counts["reclassified"], counts["lines_suspended"]) == (1, 1)
    assert statuses(loan)[:2] == ["overdue", "scheduled"]
    assert state(loan) == (D("43.50"), D("0.00"), D("0.18"), 1, 1, "special_mention", day(1))
    assert ledger(loan)[2:] == [
        ("penalty", day(1), "penalty on overdue principal 1000.00", Account.PENALTY_RECEIVABLE, D("0.18"), D("0.00")),
        ("penalty", day(1), "penalty on overdue principal 1000.00", Account.PENALTY_INCOME, D("0.00"), D("0.18")),
    ]
    overdue = topics(loan)[2]
    assert overdue == (
        "loan.overdue",
        {
            "loan_id": loan.pk,
            "business_date": "2026-02-16",
            "since": "2026-02-15",
            "installments": 1,
            "amount": "1043.50",
            "disaster_pause": False,
        },
    )
    line = CreditLine.objects.get(pk=loan.line_id)
    assert (line.status, line.suspension) == ("suspended", "overdue")
    changed = OutboxMessage.objects.get(topic="line.changed")
    assert changed.payload == {
        "line_id": line.pk,
        "farmer_id": loan.farmer_id,
        "status": "suspended",
        "suspension": "overdue",
        "loan_id": loan.pk,
        "business_date": "2026-02-16",
    }

    close(day(3))

    # Two more days: 0.18 each; dpd counts from the due date; the overdue report is sent once.
    assert state(loan) == (D("43.50"), D("0.00"), D("0.54"), 3, 3, "special_mention", day(3))
    assert [topic for topic, _payload in topics(loan)].count("loan.overdue") == 1
    assert OutboxMessage.objects.filter(topic="line.changed").count() == 1
    assert_books_agree(loan)


def test_penalty_is_on_the_overdue_principal_of_every_overdue_installment_to_the_fen(lending):
    loan = draw(lending, amount="7777.77", method="equal_installment", term=3)
    periods = list(loan.installments.order_by("number"))
    close(periods[1].due_date + dt.timedelta(days=1))  # two installments overdue now

    # 2,583.22 and 2,592.58 of principal: 2,583.22 × 0.06525 / 360 = 0.4682… → 0.47 a day from
    # 2026-02-16 to 03-15 (28 days); on 03-16 5,175.80 × 0.06525 / 360 = 0.9381… → 0.94.
    assert (periods[0].principal, periods[1].principal) == (D("2583.22"), D("2592.58"))
    penalties = list(
        JournalLine.objects.filter(loan=loan, account=Account.PENALTY_RECEIVABLE)
        .order_by("id")
        .values_list("debit", flat=True)
    )
    assert penalties == [D("0.47")] * 28 + [D("0.94")]
    assert fresh(loan).days_past_due == 29
    assert fresh(loan).penalty_due == sum(penalties)
    assert_books_agree(loan)


# --- Set-based equals per-loan ---------------------------------------------------------------------


def test_the_set_based_fall_due_posts_exactly_what_the_per_loan_service_posts(lending):
    subsidy_programme_create(
        name="脱贫户贴息", share="0.3", eligibility={}, starts_on=START, ends_on=START, actor="officer-a"
    )
    by_service = draw(lending, method="equal_installment")
    by_close = draw(lending, method="equal_installment")
    assert by_service.subsidy_share == D("0.3000")
    close(DUE_1 - dt.timedelta(days=1))

    with transaction.atomic():
        assert installments_fall_due(loan=fresh(by_service), on=DUE_1) == 1
    counts = close(DUE_1)

    assert counts["installments_due"] == 1  # the close does not post the service's twice
    # 1,023.72 a month; period 1 interest 43.50, the county's 30 %: 13.05, the farmer's 30.45.
    expected = [
        ("interest_due", DUE_1, "installment 1", Account.INTEREST_RECEIVABLE, D("30.45"), D("0.00")),
        ("interest_due", DUE_1, "installment 1", Account.SUBSIDY_RECEIVABLE, D("13.05"), D("0.00")),
        ("interest_due", DUE_1, "installment 1", Account.INTEREST_INCOME, D("0.00"), D("43.50")),
    ]
    assert ledger(by_service) == ledger(by_close) == expected
    assert state(by_service)[:3] == state(by_close)[:3] == (D("30.45"), D("13.05"), D("0.00"))
    assert statuses(by_service) == statuses(by_close)
    assert_books_agree(by_service, by_close)


# --- Classification --------------------------------------------------------------------------------

DEFAULT_EDGES = [
    (1, "special_mention"),
    (90, "special_mention"),
    (91, "substandard"),
    (180, "substandard"),
    (181, "doubtful"),
    (360, "doubtful"),
    (361, "loss"),
]


@pytest.mark.parametrize(("days_past_due", "classification"), DEFAULT_EDGES)
def test_the_default_bands_classify_each_edge(lending, days_past_due, classification):
    loan = draw(lending, amount="1000", method="bullet", term=3)
    due = loan.maturity_date
    close(due)
    assert state(loan)[3:6] == (0, 0, "normal")  # due today, not yet past due
    jump_to(loan, due + dt.timedelta(days=days_past_due - 1))

    counts = close(due + dt.timedelta(days=days_past_due))

    assert state(loan)[3:6] == (days_past_due, days_past_due, classification)
    assert counts["reclassified"] == 1


@pytest.mark.parametrize(
    ("days_past_due", "classification"),
    [
        (4, "normal"),
        (5, "special_mention"),
        (30, "special_mention"),
        (31, "substandard"),
        (60, "substandard"),
        (61, "doubtful"),
        (90, "doubtful"),
        (91, "loss"),
    ],
)
def test_the_countys_own_bands_classify_each_edge(lending, days_past_due, classification):
    LoanSettings.objects.filter(pk=1).update(
        special_mention_from=5, substandard_from=31, doubtful_from=61, loss_from=91
    )
    loan = draw(lending, amount="1000", method="bullet", term=3)
    due = loan.maturity_date
    close(due)
    jump_to(loan, due + dt.timedelta(days=days_past_due - 1))

    close(due + dt.timedelta(days=days_past_due))

    assert state(loan)[3:6] == (days_past_due, days_past_due, classification)


def test_a_loan_walks_through_the_bands_day_by_day(lending):
    LoanSettings.objects.filter(pk=1).update(special_mention_from=2, substandard_from=4, doubtful_from=6, loss_from=8)
    loan = draw(lending, amount="1000", method="bullet", term=3)
    due = loan.maturity_date
    close(due)
    seen = []
    for offset in range(1, 10):
        close(due + dt.timedelta(days=offset))
        seen.append(state(loan)[3:6:2])
    assert seen == [
        (1, "normal"),
        (2, "special_mention"),
        (3, "special_mention"),
        (4, "substandard"),
        (5, "substandard"),
        (6, "doubtful"),
        (7, "doubtful"),
        (8, "loss"),
        (9, "loss"),
    ]
    # 1,000 × 0.06525 / 360 = 0.18125 → 0.18 a day for 9 days.
    assert fresh(loan).penalty_due == D("1.62")
    assert_books_agree(loan)


# --- Idempotence and catch-up ----------------------------------------------------------------------


def test_closing_a_closed_date_again_does_nothing(lending):
    loan = draw(lending)
    close(day(2))
    before = (JournalLine.objects.count(), OutboxMessage.objects.count(), state(loan), statuses(loan))

    counts = close(day(2))
    counts_earlier = close(day(1))

    assert counts == counts_earlier == dict.fromkeys(counts, 0)
    assert (JournalLine.objects.count(), OutboxMessage.objects.count(), state(loan), statuses(loan)) == before


def _snapshot(loans: list[Loan]) -> list:
    return [(state(loan), statuses(loan), ledger(loan), topics(loan)) for loan in loans]


def test_catching_up_five_missed_days_equals_five_single_days(lending):
    loans = [draw(lending), draw(lending, amount="5000", method="equal_installment", term=6)]
    close(day(-2))
    journal_before = JournalLine.objects.count()

    sid = transaction.savepoint()
    singles = [close(day(offset)) for offset in range(-1, 4)]
    one_by_one = _snapshot(loans)
    lines_one_by_one = JournalLine.objects.count() - journal_before
    transaction.savepoint_rollback(sid)
    assert JournalLine.objects.count() == journal_before

    caught_up = close(day(3))

    assert _snapshot(loans) == one_by_one
    assert JournalLine.objects.count() - journal_before == lines_one_by_one
    assert caught_up == {key: sum(counts[key] for counts in singles) for key in caught_up}
    assert (caught_up["days"], caught_up["installments_due"], caught_up["penalty_entries"]) == (5, 2, 6)
    assert state(loans[0])[2:4] == (D("0.54"), 3)
    assert_books_agree(*loans)


def test_a_loan_drawn_after_a_day_was_closed_is_closed_for_its_own_days_only(lending):
    first = draw(lending)
    close(day(1))
    late_farmer = lending.borrower()
    late = loan_drawdown(farmer=late_farmer, amount="3000", term_months=3, method="bullet", on=day(1))
    assert late.last_closed_date == day(0)

    counts = close(day(1))  # the date again: only the new loan had it still to close

    assert (counts["days"], counts["loans_closed"], counts["penalty_entries"]) == (1, 1, 0)
    assert fresh(first).penalty_due == D("0.18")
    assert fresh(late).last_closed_date == day(1)


# --- Credit lines ----------------------------------------------------------------------------------


def test_the_line_is_suspended_while_overdue_and_released_after_repayment(lending):
    loan = draw(lending)
    close(day(2))
    line = CreditLine.objects.get(pk=loan.line_id)
    assert (line.status, line.suspension, line.available) == ("suspended", "overdue", D("0.00"))

    # Penalty 0.36 + interest 43.50 + principal 1,000.00, paid during 2026-02-18.
    loan_repay(loan=loan, amount="1043.86", on=day(3))
    line.refresh_from_db()
    assert (line.status, line.suspension) == ("active", "")
    assert fresh(loan).days_past_due == 0

    counts = close(day(3))

    assert (counts["reclassified"], counts["penalty_entries"], counts["lines_suspended"]) == (1, 0, 0)
    assert state(loan) == (D("0.00"), D("0.00"), D("0.00"), 0, 2, "normal", day(3))
    assert statuses(loan)[:2] == ["paid", "scheduled"]
    line.refresh_from_db()
    assert (line.status, line.outstanding_principal) == ("active", D("11000.00"))
    assert_books_agree(loan)


def test_lines_past_their_validity_expire(lending):
    borrower = lending.borrower()
    loan_drawdown(farmer=borrower, amount="3000", term_months=3, method="bullet", on=lending.day)
    ending = lending.borrower(valid_days=0)
    suspended = lending.borrower(valid_days=0)
    CreditLine.objects.filter(farmer=suspended).update(status="suspended", suspension="no_consent")
    valid_until = lending.day

    counts = close(valid_until)
    assert counts["lines_expired"] == 0  # valid through its last day

    counts = close(valid_until + dt.timedelta(days=1))

    assert counts["lines_expired"] == 1
    assert CreditLine.objects.get(farmer=ending).status == "expired"
    assert CreditLine.objects.get(farmer=suspended).status == "suspended"  # not ACTIVE: left alone
    assert CreditLine.objects.get(farmer=borrower).status == "active"
    message = OutboxMessage.objects.get(topic="line.changed")
    assert (message.partner_id, message.payload["status"], message.payload["farmer_id"]) == (
        lending.partner.pk,
        "expired",
        ending.pk,
    )
    assert close(valid_until + dt.timedelta(days=1))["lines_expired"] == 0


# --- Disaster pause --------------------------------------------------------------------------------


def test_a_disaster_pause_stops_penalty_and_freezes_days_past_due(lending):
    paused = draw(lending)
    township = other_township(paused.farmer)
    elsewhere = draw(lending)
    close(day(1))  # both overdue 1 day, 0.18 penalty each

    pause = disaster_pause_create(
        township_ids=[township.pk], starts_on=day(2), ends_on=day(5), reason="暴雨洪涝", actor="official-li"
    )
    close(day(5))

    assert state(paused)[2:6] == (D("0.18"), 1, 1, "special_mention")
    assert state(elsewhere)[2:6] == (D("0.90"), 5, 5, "special_mention")
    assert statuses(paused)[0] == "overdue"

    close(day(7))

    # Two more days count: dpd 7 − 4 paused days = 3; penalty for days 1, 6 and 7.
    assert state(paused)[2:5] == (D("0.54"), 3, 3)
    assert state(elsewhere)[2:5] == (D("1.26"), 7, 7)
    penalty_days = list(
        JournalEntry.objects.filter(loan=paused, kind="penalty").order_by("id").values_list("business_date", flat=True)
    )
    assert penalty_days == [day(1), day(6), day(7)]
    pause.refresh_from_db()
    assert (pause.created_by, pause.reason, pause.lifted_on, list(pause.townships.all())) == (
        "official-li",
        "暴雨洪涝",
        None,
        [township],
    )
    assert_books_agree(paused, elsewhere)


def test_installments_still_fall_due_and_overdue_during_a_pause_without_suspending_the_line(lending):
    loan = draw(lending)
    township = other_township(loan.farmer)
    disaster_pause_create(
        township_ids=[township.pk], starts_on=day(-1), ends_on=day(10), reason="冰雹", actor="official-li"
    )

    counts = close(day(3))

    assert statuses(loan)[:2] == ["overdue", "scheduled"]
    assert (counts["installments_due"], counts["installments_overdue"], counts["penalty_entries"]) == (1, 1, 0)
    assert state(loan)[:6] == (D("43.50"), D("0.00"), D("0.00"), 0, 0, "normal")
    assert CreditLine.objects.get(pk=loan.line_id).status == "active"
    overdue = OutboxMessage.objects.get(loan=loan, topic="loan.overdue")
    assert overdue.payload["disaster_pause"] is True
    assert OutboxMessage.objects.filter(loan=loan, topic="repayment.debit_requested").count() == 1


def test_lifting_a_pause_early_counts_the_days_again_and_is_recorded(lending):
    loan = draw(lending)
    township = other_township(loan.farmer)
    close(day(1))
    pause = disaster_pause_create(
        township_ids=[township.pk], starts_on=day(2), ends_on=day(30), reason="洪水", actor="official-li"
    )
    close(day(3))  # days 2, 3 paused
    with pytest.raises(ProgrammeRefused) as refusal:
        disaster_pause_lift(pause=pause, on=day(3), actor="official-wang")  # already closed
    assert refusal.value.code == "day_closed"

    disaster_pause_lift(pause=pause, on=day(4), actor="official-wang")
    close(day(5))

    pause.refresh_from_db()
    assert (pause.lifted_on, pause.lifted_by, pause.created_by) == (day(4), "official-wang", "official-li")
    assert DisasterPause.objects.filter(pk=pause.pk).exists()
    # dpd 5 − 2 paused = 3; penalty on days 1, 4, 5.
    assert state(loan)[2:4] == (D("0.54"), 3)
    with pytest.raises(ProgrammeRefused) as refusal:
        disaster_pause_lift(pause=pause, on=day(6), actor="official-wang")
    assert refusal.value.code == "already_lifted"


def test_a_pause_cannot_start_on_a_day_already_closed(lending):
    loan = draw(lending)
    township = other_township(loan.farmer)
    close(day(1))
    with pytest.raises(ProgrammeRefused) as refusal:
        disaster_pause_create(
            township_ids=[township.pk], starts_on=day(1), ends_on=day(9), reason="洪水", actor="official-li"
        )
    assert refusal.value.code == "day_closed"
    assert not DisasterPause.objects.exists()


# --- The nightly step ------------------------------------------------------------------------------


def test_the_close_runs_each_night_before_the_credit_assessment():
    steps = settings.NIGHTLY_STEPS
    assert steps.index("loans.close.loan_close_run") + 1 == steps.index("loans.nightly.credit_assessment_run")
    assert loan_close_run.manages_own_transactions is True


def test_an_empty_county_closes_nothing(lending):
    assert close(day(0)) == {
        "days": 0,
        "loans_closed": 0,
        "installments_due": 0,
        "installments_overdue": 0,
        "loans_newly_overdue": 0,
        "penalty_entries": 0,
        "reclassified": 0,
        "lines_suspended": 0,
        "lines_expired": 0,
    }
