"""The demo loan book: real services day by day, so its ledger holds every invariant."""

from __future__ import annotations

import datetime as dt

from loans.models import Loan
from loans.synthetic import demo_loans_generate
from tests.loans.test_invariants import check_invariants


def test_the_demo_loan_book_is_made_by_the_real_services(lending):
    farmers = [lending.borrower(line="20000.00") for _ in range(30)]
    until = dt.date(2026, 6, 30)

    made = demo_loans_generate(count=20, until=until, days_back=60, seed=7)

    assert made["loans"] == Loan.objects.count() == 20
    assert made["repayments"] > 0
    assert Loan.objects.filter(last_closed_date=until).count() == 20
    for farmer in farmers:
        if Loan.objects.filter(farmer=farmer).exists():
            check_invariants(farmer)
    assert demo_loans_generate(count=20, until=until, seed=7) == {"loans": 0, "skipped": 1}
