"""The nightly close of business (日终) of one county's loan book, idempotent by business date.

Every active loan carries ``last_closed_date``. :func:`loan_close_run` closes each day d with
``last_closed_date < d <= business_date`` in date order — after a missed night it catches up
day by day — and each day is **one transaction** that does the day's work for the loans not yet
closed for d and moves their ``last_closed_date`` to d. A day already closed is never closed
again, so a rerun posts nothing twice.

One day, set-based (a handful of statements whatever the size of the book):

1. **Fall due**: SCHEDULED installments due by d become DUE and their interest is posted exactly
   as :func:`loans.services.installments_fall_due` posts it (one INTEREST_DUE entry per
   installment: Dr interest receivable the farmer's part, Dr subsidy receivable the county's,
   Cr interest income); the loan's ``interest_due``/``subsidy_due`` grow; the partner is asked
   to debit the installment (outbox ``repayment.debit_requested``).
2. **Overdue**: DUE installments due before d and not fully paid become OVERDUE; a loan that had
   nothing overdue until now is reported to the partner (outbox ``loan.overdue``).
3. **Days past due**: d − the oldest unpaid overdue due date (less paused days, see 5);
   ``max_days_past_due`` keeps the greatest.
4. **Penalty interest** for the day on the overdue principal (unpaid principal of OVERDUE
   installments): round_half_up(overdue principal × penalty rate / 360, 2), one PENALTY entry.
   The penalty rate was fixed at drawdown (contract rate × (1 + the county's markup)).
5. **Disaster pause** (灾害暂停): on a day a :class:`~loans.models.DisasterPause` covers the
   township of the farmer's village (starts_on <= d <= ends_on, and before lifted_on), the loan
   gets no penalty and its days past due and classification stay as they were; installments
   still fall due and turn overdue (the partner still needs to know a payment was missed).
   **Paused days never count as days past due**: after the pause the count resumes where it
   stopped (d − oldest overdue due date − the paused days since), instead of jumping by the
   length of the pause — which would push a farmer a band down the day the relief ends. As a
   closed day's pause state must not change afterwards, :mod:`loans.programmes` refuses a pause
   that starts, or a lift that takes effect, on a day already closed.
6. **Five-category classification** (五级分类) from days past due with the county's bands
   (:class:`~loans.models.LoanSettings`: the lowest days past due of 关注, 次级, 可疑, 损失).
7. **Credit lines**: a farmer with an active loan past due has an ACTIVE line SUSPENDED
   (``overdue``); repaying releases it (:func:`loans.services.line_release_if_current`). ACTIVE
   lines past ``valid_until`` EXPIRE. Both are reported to the partner (``line.changed``).

Only rows that change are touched, except ``last_closed_date``, which one UPDATE moves for every
loan of the day. The loans with anything to do (something falling due or overdue, days past due,
a classification to revisit: a few percent) are gathered and locked first, in id order, into a
temporary table every later statement joins — and since the services lock the loan row before
its installments, the close and a farmer's repayment at 02:00 wait for each other instead of
deadlocking. The partial index ``installment_unsettled`` (migration 0006: installments DUE or
OVERDUE, a few percent of the table) finds overdue installments without reading the history of
paid ones, which only grows (PostgreSQL 18's skip scan of ``installment_due`` does nearly as
well today; PostgreSQL 15 has no skip scan).

Cost (``benchmarks/close_1m.py``, 2 cores): one day of 1,000,000 open loans, ~30,000
installments falling due and ~25,000 loans past due, takes 25–30 s; 15–22 s of it is the
UPDATE of ``last_closed_date``, which rewrites every loan row and all seven of its indexes
(``last_closed_date`` is indexed, so the update cannot be HOT).

Invariant used to bound the scan of installments falling due: an active loan has no SCHEDULED
installment due on or before its ``last_closed_date`` (the close of that date made it DUE; the
services only ever add installments due after today), and no DUE installment due before it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from loans.models import Loan, LoanSettings
from loans.policy import policy_active

logger = logging.getLogger(__name__)

COUNT_KEYS = (
    "days",
    "loans_closed",
    "installments_due",
    "installments_overdue",
    "loans_newly_overdue",
    "penalty_entries",
    "reclassified",
    "lines_suspended",
    "lines_expired",
)
WORK_TABLE = "loan_close_work"
DUE_TABLE = "loan_close_due"
# For the statements of the close only (SET LOCAL, gone at commit): JIT compilation costs more
# than it saves on these one-pass statements, and the hash joins of the day's work fit in memory.
_CLOSE_SETTINGS = {"jit": "off", "work_mem": "128MB"}


def loan_close_run(*, business_date: dt.date) -> dict[str, int]:
    """Close every day not yet closed up to ``business_date``, one transaction per day, in date
    order; returns the summed counts (``days`` closed, ``loans_closed`` loan-days, …)."""
    totals = dict.fromkeys(COUNT_KEYS, 0)
    began = time.monotonic()
    while (day := _next_day(business_date)) is not None:
        with transaction.atomic():
            counts = loan_close_day(day=day)
        for key, value in counts.items():
            totals[key] += value
        totals["days"] += 1
    # Outside the loop: lines expire even in a county with no loan left to close (idempotent).
    with transaction.atomic():
        with connection.cursor() as cursor:
            _settings(cursor)
            totals["lines_expired"] += _lines_expire(cursor, day=business_date, now=timezone.now())
    logger.info("loan close to %s in %.1f s: %s", business_date, time.monotonic() - began, totals)
    return totals


# counties.services.nightly_run must not wrap this step in one transaction: each day commits on
# its own, so a crash on the third day of a catch-up keeps the first two.
loan_close_run.manages_own_transactions = True


def _next_day(business_date: dt.date) -> dt.date | None:
    """The earliest day some active loan still has to close, if not after ``business_date``."""
    oldest = Loan.objects.filter(status=Loan.Status.ACTIVE, last_closed_date__lt=business_date).aggregate(
        day=Min("last_closed_date")
    )["day"]
    return None if oldest is None else oldest + dt.timedelta(days=1)


def loan_close_day(*, day: dt.date) -> dict[str, int]:
    """Close ``day`` for the active loans whose last close is before it (call it inside a
    transaction: :func:`loan_close_run` does). Returns the day's counts."""
    settings, _created = LoanSettings.objects.get_or_create(pk=1)
    now = timezone.now()
    params = {
        "day": day,
        "now": now,
        "special_mention_from": settings.special_mention_from,
        "substandard_from": settings.substandard_from,
        "doubtful_from": settings.doubtful_from,
        "loss_from": settings.loss_from,
    }
    counts = dict.fromkeys(COUNT_KEYS, 0)
    del counts["days"], counts["lines_expired"]
    with connection.cursor() as cursor:
        _settings(cursor)
        cursor.execute(
            "SELECT min(last_closed_date) FROM loans_loan WHERE status = 'active' AND last_closed_date < %(day)s",
            params,
        )
        params["since"] = cursor.fetchone()[0]
        if params["since"] is None:
            return counts
        _gather(cursor, params)
        _pauses_mark(cursor, params)
        counts["installments_due"] = _fall_due(cursor, params)
        counts["installments_overdue"], counts["loans_newly_overdue"] = _overdue(cursor, params)
        _figures(cursor, params)
        counts["penalty_entries"] = _penalties(cursor, params)
        counts["reclassified"] = _loans_update(cursor, params)
        cursor.execute(f"SELECT count(*) FROM {WORK_TABLE}")
        worked = cursor.fetchone()[0]
        # Every other loan of the day: nothing but the date (the one statement touching them all).
        cursor.execute(
            "UPDATE loans_loan SET last_closed_date = %(day)s WHERE status = 'active' AND last_closed_date < %(day)s",
            params,
        )
        counts["loans_closed"] = worked + cursor.rowcount
        counts["lines_suspended"] = _lines_suspend(cursor, params)
    return counts


def _settings(cursor) -> None:
    for name, value in _CLOSE_SETTINGS.items():
        cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


# --- The day's work set ----------------------------------------------------------------------------


def _gather(cursor, params: dict) -> None:
    """The loans of the day with anything to do, locked in id order, with what the day's steps
    compute for them. A loan with nothing falling due, nothing overdue, no days past due and a
    normal classification only has its ``last_closed_date`` moved."""
    cursor.execute(
        f"""
        CREATE TEMP TABLE IF NOT EXISTS {WORK_TABLE} (
            id bigint PRIMARY KEY,
            farmer_id bigint NOT NULL,
            partner_id bigint NOT NULL,
            penalty_rate numeric NOT NULL,
            days_past_due integer NOT NULL,
            classification varchar(16) NOT NULL,
            paused boolean NOT NULL DEFAULT false,
            interest_add numeric(14, 2) NOT NULL DEFAULT 0,
            subsidy_add numeric(14, 2) NOT NULL DEFAULT 0,
            overdue_principal numeric(14, 2),
            oldest_overdue date,
            penalty numeric(14, 2) NOT NULL DEFAULT 0,
            new_days_past_due integer,
            new_classification varchar(16)
        ) ON COMMIT DELETE ROWS
        """
    )
    # Kept for the session and emptied, not created per day: a catch-up of many days in one
    # transaction (or a test's) would otherwise hold locks on a new table for every day.
    cursor.execute(f"TRUNCATE {WORK_TABLE}")
    cursor.execute(
        f"""
        INSERT INTO {WORK_TABLE} (id, farmer_id, partner_id, penalty_rate, days_past_due, classification)
        SELECT l.id, l.farmer_id, l.partner_id, l.penalty_rate, l.days_past_due, l.classification
          FROM loans_loan l
         WHERE l.status = 'active' AND l.last_closed_date < %(day)s
           AND (l.days_past_due > 0 OR l.classification <> 'normal'
                OR l.id IN (SELECT loan_id FROM loans_installment
                             WHERE status = 'scheduled' AND due_date > %(since)s AND due_date <= %(day)s)
                OR l.id IN (SELECT loan_id FROM loans_installment WHERE status IN ('due', 'overdue')))
         ORDER BY l.id
           FOR UPDATE OF l
        """,
        params,
    )
    cursor.execute(f"ANALYZE {WORK_TABLE}")


def _pauses_mark(cursor, params: dict) -> None:
    cursor.execute(
        f"""
        UPDATE {WORK_TABLE} w SET paused = true
          FROM counties_farmer f JOIN counties_village v ON v.id = f.village_id
         WHERE f.id = w.farmer_id
           AND EXISTS (SELECT 1 FROM loans_disasterpause_townships pt
                         JOIN loans_disasterpause p ON p.id = pt.disasterpause_id
                        WHERE pt.township_id = v.township_id AND p.starts_on <= %(day)s AND %(day)s <= p.ends_on
                          AND (p.lifted_on IS NULL OR %(day)s < p.lifted_on))
        """,
        params,
    )


# --- 1. Fall due -----------------------------------------------------------------------------------


def _fall_due(cursor, params: dict) -> int:
    """Installments due by the day become DUE, posted entry by entry as the per-loan service
    posts them (same accounts, amounts, order and memo); returns how many fell due."""
    cursor.execute(
        f"""
        CREATE TEMP TABLE IF NOT EXISTS {DUE_TABLE} (
            loan_id bigint NOT NULL,
            partner_id bigint NOT NULL,
            number integer NOT NULL,
            due_date date NOT NULL,
            interest numeric(14, 2) NOT NULL,
            subsidy numeric(14, 2) NOT NULL,
            payment numeric(14, 2) NOT NULL
        ) ON COMMIT DELETE ROWS
        """
    )
    cursor.execute(f"TRUNCATE {DUE_TABLE}")
    cursor.execute(
        f"""
        WITH fell AS (
            UPDATE loans_installment i SET status = 'due'
              FROM {WORK_TABLE} w
             WHERE i.loan_id = w.id AND i.status = 'scheduled' AND i.due_date > %(since)s AND i.due_date <= %(day)s
            RETURNING i.loan_id, w.partner_id, i.number, i.due_date, i.interest, i.subsidy,
                      i.principal - i.principal_paid + i.interest - i.subsidy - i.interest_paid AS payment
        )
        INSERT INTO {DUE_TABLE} SELECT * FROM fell ORDER BY loan_id, due_date, number
        """,
        params,
    )
    fallen = cursor.rowcount
    if not fallen:
        return 0
    # The service posts nothing for an installment without interest (journal_post skips an
    # entry of zeros) and leaves out zero lines; so does this.
    cursor.execute(
        f"""
        WITH entries AS (
            INSERT INTO loans_journalentry (kind, loan_id, business_date, memo, created_at)
            SELECT 'interest_due', loan_id, %(day)s, 'installment ' || number, %(now)s
              FROM {DUE_TABLE} WHERE interest <> 0
             ORDER BY loan_id, due_date, number
            RETURNING id, loan_id, memo
        )
        INSERT INTO loans_journalline (entry_id, loan_id, account, debit, credit)
        SELECT e.id, e.loan_id, v.account, v.debit, v.credit
          FROM entries e
          JOIN {DUE_TABLE} d ON d.loan_id = e.loan_id AND e.memo = 'installment ' || d.number
         CROSS JOIN LATERAL (VALUES (1, 'interest_receivable', d.interest - d.subsidy, 0.00),
                                    (2, 'subsidy_receivable', d.subsidy, 0.00),
                                    (3, 'interest_income', 0.00, d.interest)) v(ord, account, debit, credit)
         WHERE v.debit <> 0 OR v.credit <> 0
         ORDER BY e.id, v.ord
        """,
        params,
    )
    # The scheduled-repayment instruction: the partner debits what the farmer owes for the
    # installment (nothing to debit when the county's subsidy covers it all).
    cursor.execute(
        f"""
        INSERT INTO loans_outboxmessage (topic, partner_id, loan_id, payload, created_at, attempts, last_error)
        SELECT 'repayment.debit_requested', partner_id, loan_id,
               jsonb_build_object('loan_id', loan_id, 'installment', number, 'due_date', due_date,
                                  'amount', payment::text),
               %(now)s, 0, ''
          FROM {DUE_TABLE} WHERE payment > 0
         ORDER BY loan_id, due_date, number
        """,
        params,
    )
    return fallen


# --- 2. Overdue ------------------------------------------------------------------------------------


def _overdue(cursor, params: dict) -> tuple[int, int]:
    """DUE installments due before the day and not fully paid become OVERDUE; a loan that had no
    overdue installment until now is reported. Returns (installments, loans newly overdue)."""
    cursor.execute(
        f"""
        WITH went AS (
            UPDATE loans_installment i SET status = 'overdue'
              FROM {WORK_TABLE} w
             WHERE i.loan_id = w.id AND i.status = 'due' AND i.due_date < %(day)s
               AND (i.principal_paid < i.principal OR i.interest_paid < i.interest - i.subsidy)
            RETURNING i.loan_id, i.due_date,
                      i.principal - i.principal_paid + i.interest - i.subsidy - i.interest_paid AS owed
        ),
        first_time AS (
            -- the statement's snapshot: installments turned overdue just now still read 'due'
            SELECT loan_id, min(due_date) AS since, sum(owed) AS owed, count(*) AS installments
              FROM went
             WHERE NOT EXISTS (SELECT 1 FROM loans_installment j WHERE j.loan_id = went.loan_id AND j.status = 'overdue')
             GROUP BY loan_id
        ),
        reported AS (
            INSERT INTO loans_outboxmessage (topic, partner_id, loan_id, payload, created_at, attempts, last_error)
            SELECT 'loan.overdue', w.partner_id, f.loan_id,
                   jsonb_build_object('loan_id', f.loan_id, 'business_date', %(day)s::date, 'since', f.since,
                                      'installments', f.installments, 'amount', f.owed::text,
                                      'disaster_pause', w.paused),
                   %(now)s, 0, ''
              FROM first_time f JOIN {WORK_TABLE} w ON w.id = f.loan_id
             ORDER BY f.loan_id
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM went), (SELECT count(*) FROM reported)
        """,
        params,
    )
    went, reported = cursor.fetchone()
    return went, reported


# --- 3, 4, 5, 6. The day's figures per loan ---------------------------------------------------


def _figures(cursor, params: dict) -> None:
    """One pass over the work set: interest and subsidy fallen due, the overdue principal and
    oldest overdue due date, days past due, the classification and the day's penalty."""
    # Days a pause covered since the oldest overdue due date do not count (see the module's
    # docstring); only loans of townships with a pause in that window have any.
    paused_days = f"""
        SELECT o.loan_id, count(DISTINCT g.day) AS days
          FROM overdue o
          JOIN {WORK_TABLE} w2 ON w2.id = o.loan_id
          JOIN counties_farmer f ON f.id = w2.farmer_id
          JOIN counties_village v ON v.id = f.village_id
          JOIN loans_disasterpause_townships pt ON pt.township_id = v.township_id
          JOIN loans_disasterpause p ON p.id = pt.disasterpause_id
         CROSS JOIN LATERAL generate_series(
               GREATEST(p.starts_on, o.oldest + 1),
               LEAST(p.ends_on, COALESCE(p.lifted_on - 1, p.ends_on), %(day)s::date),
               interval '1 day') AS g(day)
         WHERE p.starts_on <= %(day)s AND p.ends_on > o.oldest
         GROUP BY o.loan_id
    """
    cursor.execute(
        f"""
        WITH fallen AS (
            SELECT loan_id, sum(interest - subsidy) AS interest, sum(subsidy) AS subsidy
              FROM {DUE_TABLE} GROUP BY loan_id
        ),
        overdue AS (
            SELECT i.loan_id, sum(i.principal - i.principal_paid) AS principal, min(i.due_date) AS oldest
              FROM loans_installment i JOIN {WORK_TABLE} w2 ON w2.id = i.loan_id
             WHERE i.status = 'overdue'
             GROUP BY i.loan_id
        ),
        paused_days AS ({paused_days}),
        figures AS (
            -- A paused loan keeps its days past due; so does one with nothing overdue (the
            -- services reset them on repayment; penalty left unpaid keeps the loan past due).
            SELECT w0.id, COALESCE(d.interest, 0) AS interest, COALESCE(d.subsidy, 0) AS subsidy,
                   o.principal, o.oldest,
                   CASE WHEN w0.paused OR o.oldest IS NULL THEN w0.days_past_due
                        ELSE %(day)s::date - o.oldest - COALESCE(p.days, 0) END AS days
              FROM {WORK_TABLE} w0
              LEFT JOIN fallen d ON d.loan_id = w0.id
              LEFT JOIN overdue o ON o.loan_id = w0.id
              LEFT JOIN paused_days p ON p.loan_id = w0.id
        )
        UPDATE {WORK_TABLE} w SET
               interest_add = f.interest,
               subsidy_add = f.subsidy,
               overdue_principal = f.principal,
               oldest_overdue = f.oldest,
               new_days_past_due = f.days,
               new_classification = CASE
                   WHEN w.paused THEN w.classification
                   WHEN f.days >= %(loss_from)s THEN 'loss'
                   WHEN f.days >= %(doubtful_from)s THEN 'doubtful'
                   WHEN f.days >= %(substandard_from)s THEN 'substandard'
                   WHEN f.days >= %(special_mention_from)s THEN 'special_mention'
                   ELSE 'normal' END,
               -- one day of penalty interest on the overdue principal, half up to the fen
               penalty = CASE WHEN w.paused OR f.principal IS NULL THEN 0
                              ELSE round(f.principal * w.penalty_rate / 360, 2) END
          FROM figures f
         WHERE w.id = f.id
        """,
        params,
    )


# --- 4. Penalty ------------------------------------------------------------------------------------


def _penalties(cursor, params: dict) -> int:
    """Post the day's penalty interest (computed by :func:`_figures`), one entry a loan."""
    cursor.execute(
        f"""
        WITH entries AS (
            INSERT INTO loans_journalentry (kind, loan_id, business_date, memo, created_at)
            SELECT 'penalty', id, %(day)s, 'penalty on overdue principal ' || overdue_principal, %(now)s
              FROM {WORK_TABLE} WHERE penalty > 0
             ORDER BY id
            RETURNING id, loan_id
        )
        INSERT INTO loans_journalline (entry_id, loan_id, account, debit, credit)
        SELECT e.id, e.loan_id, v.account, v.debit, v.credit
          FROM entries e
          JOIN {WORK_TABLE} w ON w.id = e.loan_id
         CROSS JOIN LATERAL (VALUES (1, 'penalty_receivable', w.penalty, 0.00),
                                    (2, 'penalty_income', 0.00, w.penalty)) v(ord, account, debit, credit)
         ORDER BY e.id, v.ord
        """,
        params,
    )
    return cursor.rowcount // 2


# --- The loans -------------------------------------------------------------------------------------


def _loans_update(cursor, params: dict) -> int:
    """Write the day's figures to the loans of the work set (and close the day for them);
    returns how many changed classification."""
    cursor.execute(
        f"""
        UPDATE loans_loan l SET
               last_closed_date = %(day)s,
               interest_due = l.interest_due + w.interest_add,
               subsidy_due = l.subsidy_due + w.subsidy_add,
               penalty_due = l.penalty_due + w.penalty,
               days_past_due = w.new_days_past_due,
               max_days_past_due = GREATEST(l.max_days_past_due, w.new_days_past_due),
               classification = w.new_classification
          FROM {WORK_TABLE} w
         WHERE l.id = w.id
        """,
        params,
    )
    cursor.execute(f"SELECT count(*) FROM {WORK_TABLE} WHERE new_classification <> classification")
    return cursor.fetchone()[0]


# --- 7. Credit lines -------------------------------------------------------------------------------


def _lines_suspend(cursor, params: dict) -> int:
    """Suspend the ACTIVE lines of farmers with a loan past due, and tell the partner."""
    cursor.execute(
        f"""
        WITH past_due AS (
            SELECT DISTINCT ON (farmer_id) farmer_id, partner_id, id AS loan_id
              FROM {WORK_TABLE} WHERE new_days_past_due > 0
             ORDER BY farmer_id, id
        ),
        suspended AS (
            UPDATE loans_creditline l SET status = 'suspended', suspension = 'overdue', updated_at = %(now)s
              FROM past_due p
             WHERE l.farmer_id = p.farmer_id AND l.status = 'active'
            RETURNING l.id, l.farmer_id, p.partner_id, p.loan_id
        ),
        reported AS (
            INSERT INTO loans_outboxmessage (topic, partner_id, loan_id, payload, created_at, attempts, last_error)
            SELECT 'line.changed', partner_id, loan_id,
                   jsonb_build_object('line_id', id, 'farmer_id', farmer_id, 'status', 'suspended',
                                      'suspension', 'overdue', 'loan_id', loan_id, 'business_date', %(day)s::date),
                   %(now)s, 0, ''
              FROM suspended ORDER BY id
            RETURNING 1
        )
        SELECT count(*) FROM reported
        """,
        params,
    )
    return cursor.fetchone()[0]


def _lines_expire(cursor, *, day: dt.date, now: dt.datetime) -> int:
    """ACTIVE lines valid until before the day expire; the partner of the farmer's latest loan
    (else the active policy's) is told."""
    policy = policy_active()
    cursor.execute(
        """
        WITH expired AS (
            UPDATE loans_creditline SET status = 'expired', updated_at = %(now)s
             WHERE status = 'active' AND valid_until < %(day)s
            RETURNING id, farmer_id, valid_until
        ),
        told AS (
            SELECT e.*, COALESCE((SELECT l.partner_id FROM loans_loan l WHERE l.farmer_id = e.farmer_id
                                   ORDER BY l.id DESC LIMIT 1), %(policy_partner)s) AS partner_id
              FROM expired e
        ),
        reported AS (
            INSERT INTO loans_outboxmessage (topic, partner_id, payload, created_at, attempts, last_error)
            SELECT 'line.changed', partner_id,
                   jsonb_build_object('line_id', id, 'farmer_id', farmer_id, 'status', 'expired',
                                      'valid_until', valid_until, 'business_date', %(day)s::date),
                   %(now)s, 0, ''
              FROM told WHERE partner_id IS NOT NULL ORDER BY id
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM expired), (SELECT count(*) FROM reported)
        """,
        {"day": day, "now": now, "policy_partner": policy.partner_id if policy else None},
    )
    return cursor.fetchone()[0]
