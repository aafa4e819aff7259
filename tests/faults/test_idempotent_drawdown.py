"""The same drawdown posted 20 times at once under one idempotency key makes one loan.

Twenty threads, each on its own database connection, released together by a barrier, each
running :func:`loans.services.loan_drawdown` inside :func:`loans.idempotency.idempotent` with the
same key — what twenty retries of a farmer's confirmation (or of a bank's POST) racing each
other look like to the server. The county is committed (a scratch county): every thread sees
only what the others committed, as separate web processes would.

Every answer is either the first request's stored result (201 and its loan id) or 409
``idempotency_in_progress`` (a repeat that arrived while the first still ran); the work ran
once; one loan, one disbursement instruction, one ledger entry, the line used once.
"""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

from django.db import connections
from django.utils import timezone
from django_tenants.utils import schema_context

from loans.idempotency import IdempotencyInProgress, idempotent
from loans.models import CreditLine, IdempotencyRecord, JournalEntry, Loan, OutboxMessage
from loans.services import loan_drawdown
from tests.loans.conftest import Lending
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import activate_policy

REQUESTS = 20
TIMEOUT = 120


def test_twenty_concurrent_drawdowns_with_one_key_make_one_loan(scratch_county):
    county = scratch_county("faults-race")
    with schema_context(county.schema_name):
        partner = credit_partner("faults-race-bank")
        farmer = Lending(partner, activate_policy(partner), timezone.localdate()).borrower(line="50000.00")
    key = str(uuid.uuid4())
    terms = {"amount": "12000", "term_months": 12, "method": "equal_principal"}
    barrier = threading.Barrier(REQUESTS)
    ran: list[int] = []
    answers: list[tuple] = []

    def run() -> tuple[int, dict]:
        loan = loan_drawdown(farmer=farmer, **terms)
        ran.append(loan.pk)
        return 201, {"loan_id": loan.pk}

    def post() -> None:
        try:
            with schema_context(county.schema_name):
                barrier.wait(timeout=TIMEOUT)
                try:
                    answers.append(idempotent(scope=f"farmer:{farmer.pk}", key=key, operation="drawdown", request=terms, run=run))
                except IdempotencyInProgress as refused:
                    answers.append((refused.status_code, refused.code))
        except Exception as error:
            answers.append(("error", repr(error)))
        finally:
            connections.close_all()  # this thread's connection

    threads = [threading.Thread(target=post) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)

    with schema_context(county.schema_name):
        loan = Loan.objects.get(farmer=farmer)
        assert ran == [loan.pk]
        assert len(answers) == REQUESTS
        allowed = [(201, {"loan_id": loan.pk}), (409, "idempotency_in_progress")]
        assert all(answer in allowed for answer in answers), answers
        assert (201, {"loan_id": loan.pk}) in answers
        assert OutboxMessage.objects.filter(loan=loan, topic="drawdown.requested").count() == 1
        assert JournalEntry.objects.filter(loan=loan).count() == 1
        assert CreditLine.objects.get(farmer=farmer).outstanding_principal == Decimal("12000.00")
        record = IdempotencyRecord.objects.get(scope=f"farmer:{farmer.pk}", key=key)
        assert (record.completed, record.status_code, record.response) == (True, 201, {"loan_id": loan.pk})

        # A 21st, later: the stored answer, nothing run.
        assert idempotent(scope=f"farmer:{farmer.pk}", key=key, operation="drawdown", request=terms, run=run) == (
            201, {"loan_id": loan.pk},
        )
        assert ran == [loan.pk] and Loan.objects.filter(farmer=farmer).count() == 1
