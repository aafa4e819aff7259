"""Double-entry ledger of the loan book.

Every money movement is one :class:`JournalEntry` whose lines balance (debits = credits). The
services that move money post here in the same transaction as they change the loan row, so a
loan's balances always equal its ledger balances — :func:`loan_ledger_balances` reads them back
for the tests and the reconciliation report.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

from django.db.models import F, Sum

from loans.models import Account, JournalEntry, JournalLine, Loan

ZERO = Decimal("0.00")
DEBIT_NORMAL = {
    Account.LOANS_RECEIVABLE,
    Account.INTEREST_RECEIVABLE,
    Account.SUBSIDY_RECEIVABLE,
    Account.PENALTY_RECEIVABLE,
    Account.COMPENSATION_RECEIVABLE,
    Account.WRITE_OFF_EXPENSE,
}


class UnbalancedEntryError(ValueError):
    pass


def journal_post(
    *,
    kind: str,
    business_date: dt.date,
    loan: Loan | None,
    debits: dict[str, Decimal],
    credits: dict[str, Decimal],
    memo: str = "",
) -> JournalEntry | None:
    """Post one balanced entry; zero amounts are left out, and an entry of nothing posts
    nothing (returns None). Raises :class:`UnbalancedEntryError` before writing anything if
    debits and credits differ or an amount is negative or not to the fen."""
    debits = {account: amount for account, amount in debits.items() if amount}
    credits = {account: amount for account, amount in credits.items() if amount}
    for amount in (*debits.values(), *credits.values()):
        if amount < 0 or amount != amount.quantize(Decimal("0.01")):
            raise UnbalancedEntryError(f"invalid amount {amount} in {kind}")
    if sum(debits.values(), ZERO) != sum(credits.values(), ZERO):
        raise UnbalancedEntryError(f"{kind}: debits {debits} != credits {credits}")
    if not debits:
        return None
    entry = JournalEntry.objects.create(kind=kind, loan=loan, business_date=business_date, memo=memo[:200])
    JournalLine.objects.bulk_create(
        [JournalLine(entry=entry, loan=loan, account=account, debit=amount) for account, amount in debits.items()]
        + [JournalLine(entry=entry, loan=loan, account=account, credit=amount) for account, amount in credits.items()]
    )
    return entry


def loan_ledger_balances(*, loan_ids: list[int] | None = None) -> dict[int, dict[str, Decimal]]:
    """Per loan, each account's balance on its normal side (debit − credit for debit-normal
    accounts, credit − debit otherwise)."""
    lines = JournalLine.objects.filter(loan__isnull=False)
    if loan_ids is not None:
        lines = lines.filter(loan_id__in=loan_ids)
    balances: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for row in lines.values("loan_id", "account").annotate(debit=Sum("debit"), credit=Sum("credit")):
        sign = 1 if row["account"] in DEBIT_NORMAL else -1
        balances[row["loan_id"]][row["account"]] = sign * (row["debit"] - row["credit"])
    return balances


def unbalanced_entries() -> list[int]:
    """Ids of journal entries whose lines do not balance (should always be empty)."""
    return list(
        JournalEntry.objects.annotate(debit=Sum("lines__debit"), credit=Sum("lines__credit"))
        .exclude(debit=F("credit"))
        .values_list("id", flat=True)
    )
