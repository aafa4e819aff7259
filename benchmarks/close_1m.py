"""Benchmark: the nightly close of business (``loans.close.loan_close_run``) of one county with
1,000,000 open loans, one business day per run.

    .venv/bin/python -m benchmarks.close_1m [--loans 1000000] [--runs 3] [--rebuild]

Works in a scratch county (411329 新野县, xinye.localhost), onboarded here if missing. Its loan
book is built set-based (``generate_series`` INSERTs, a few minutes) when it does not hold
``--loans`` open loans, or with ``--rebuild``, and is then kept:

* 400 villages in 20 townships; one household, farmer, credit line and loan per farmer;
* loans of 3, 6, 9 or 12 months (等额本金, 4.35 %), drawn on every day of the past term, so that
  about 1/30 of them have an installment falling due on any day; installments already due are
  paid, except for 3 % of the loans, which are past due (1 to ~360 days, their lines suspended);
* about 1/365 of the lines reach the end of their validity each day.

Each run closes the next business date (``last_closed_date`` + 1) of every loan — what happens
on consecutive nights. Before each run, untimed, what a day between nights does: the partner's
debits of the installments that fell due the day before succeed for 97 % of the loans (marked
paid directly — this county's ledger is for timing only and is not reconciled), VACUUM ANALYZE
of the loan tables, a CHECKPOINT, and a wait of up to 5 minutes for the machine to be quiet.
Prints each run (wall time, loans/s, the day's counts, the slowest statements) and the median;
the target is 60 s for one day of 1,000,000 loans on this 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import time
from collections import defaultdict

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform.settings")
django.setup()

import psutil  # noqa: E402
from django.db import DatabaseError, connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from loans.close import loan_close_run  # noqa: E402
from platform.models import County, LendingPartner  # noqa: E402
from platform.services import county_onboard  # noqa: E402

COUNTY = {"code": "411329", "name": "新野县", "domain": "xinye.localhost", "province": "河南省", "city": "南阳市"}
PARTNER = {"code": "bench-close", "name": "日终基准测试银行"}
TARGET_SECONDS = 60.0
OVERDUE_PERCENT = 3  # loans past due, kept by the simulated repayments between runs
TOWNSHIPS, VILLAGES_PER_TOWNSHIP = 20, 20
# A book older than this (days closed since it was built) is rebuilt: its loans are maturing.
MAX_BOOK_AGE_DAYS = 60
BOOK_TABLES = ("loans_loan", "loans_installment", "loans_creditline")
MB = 1024 * 1024


# --- The county and its book ---------------------------------------------------------------------


def scratch_county() -> County:
    county = County.objects.filter(code=COUNTY["code"]).first()
    if county is None:
        print(f"onboarding scratch county {COUNTY['code']} {COUNTY['name']}")
        county = county_onboard(**COUNTY).county
    county.create_schema(check_if_exists=True, verbosity=0)  # after a rebuild interrupted half-way
    return county


def book_state() -> tuple[int, dt.date | None, dt.date | None]:
    """(open loans, the day they were built for, the last day closed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), max(start_date) + 1, max(last_closed_date) FROM loans_loan WHERE status = 'active'"
        )
        return cursor.fetchone()


def book_build(*, loans: int, day: dt.date, partner_id: int) -> None:
    """The county's roster and loan book for a close of ``day``, set-based. The ledger tables
    refuse DELETE and TRUNCATE, so an old book goes with the whole schema (see main)."""
    began = time.perf_counter()
    params = {
        "n": loans,
        "day": day,
        "yesterday": day - dt.timedelta(days=1),
        "partner": partner_id,
        "county": COUNTY["code"],
        "townships": TOWNSHIPS,
        "villages": VILLAGES_PER_TOWNSHIP,
        "overdue_percent": OVERDUE_PERCENT,
    }
    steps = [
        (
            "townships",
            """
            INSERT INTO counties_township (code, name)
            SELECT %(county)s || lpad(t::text, 3, '0'), '乡镇' || t FROM generate_series(1, %(townships)s) t
            """,
        ),
        (
            "villages",
            """
            INSERT INTO counties_village (township_id, code, name)
            SELECT t.id, t.code || lpad(v::text, 3, '0'), t.name || '村' || v
              FROM counties_township t CROSS JOIN generate_series(1, %(villages)s) v
            """,
        ),
        (
            "households",
            """
            INSERT INTO counties_household (village_id, code, members)
            SELECT v.id, 'B' || lpad(g::text, 10, '0'), 1
              FROM generate_series(1, %(n)s) g
              JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM counties_village) v
                ON v.k = g %% (%(townships)s * %(villages)s)
            """,
        ),
        (
            "farmers",
            """
            INSERT INTO counties_farmer (household_id, village_id, name, gender, birth_date, is_household_head,
                                         id_number_encrypted, id_number_hash, phone_encrypted, phone_hash, registered_at)
            SELECT id, village_id, '农户', 'M', DATE '1980-01-01', true, 'benchmark', md5('close-1m-' || id), '', '', now()
              FROM counties_household ORDER BY id
            """,
        ),
        (
            "credit lines",
            """
            INSERT INTO loans_creditline (farmer_id, amount, outstanding_principal, grade, annual_rate, valid_until,
                                          status, suspension, business_date, created_at, updated_at)
            SELECT id, 50000, 0, 'B', 0.0435, %(yesterday)s::date + (id %% 365)::int, 'active', '', %(yesterday)s,
                   now(), now()
              FROM counties_farmer ORDER BY id
            """,
        ),
        (
            "loans",
            # age: days since drawdown, 1 … (term × 30 − 2), spread by a multiplicative hash.
            """
            INSERT INTO loans_loan (farmer_id, line_id, partner_id, principal, annual_rate, penalty_rate, subsidy_share,
                                    term_months, method, start_date, maturity_date, status, disbursement,
                                    partner_reference, outstanding_principal, interest_due, subsidy_due, penalty_due,
                                    days_past_due, max_days_past_due, classification, last_closed_date, created_at)
            SELECT farmer_id, id, %(partner)s, term * 1000, 0.0435, 0.06525, 0, term, 'equal_principal', start_date,
                   (start_date + make_interval(months => term::int))::date, 'active', 'confirmed', '', term * 1000,
                   0, 0, 0, 0, 0, 'normal', %(yesterday)s, now()
              FROM (SELECT id, farmer_id, 3 * (1 + farmer_id %% 4) AS term,
                           %(day)s::date - 1 - ((farmer_id * 7919) %% (3 * (1 + farmer_id %% 4) * 30 - 2))::int AS start_date
                      FROM loans_creditline) s
             ORDER BY farmer_id
            """,
        ),
        (
            "installments",
            # Due before today: paid, except the unpaid ones of 3 % of the loans (due yesterday:
            # DUE, turning overdue tonight; earlier: OVERDUE).
            """
            INSERT INTO loans_installment (loan_id, number, due_date, principal, interest, subsidy, principal_paid,
                                           interest_paid, status, paid_on)
            SELECT id, n, due_date, 1000, round((principal - 1000 * (n - 1)) * 0.003625, 2), 0,
                   CASE WHEN status = 'paid' THEN 1000 ELSE 0 END,
                   CASE WHEN status = 'paid' THEN round((principal - 1000 * (n - 1)) * 0.003625, 2) ELSE 0 END,
                   status, CASE WHEN status = 'paid' THEN due_date END
              FROM (SELECT l.id, l.principal, n, d.due_date,
                           CASE WHEN d.due_date >= %(day)s THEN 'scheduled'
                                WHEN (l.id * 2654435761) %% 100 >= %(overdue_percent)s THEN 'paid'
                                WHEN d.due_date = %(yesterday)s THEN 'due'
                                ELSE 'overdue' END AS status
                      FROM loans_loan l
                     CROSS JOIN LATERAL generate_series(1, l.term_months) n
                     CROSS JOIN LATERAL (SELECT (l.start_date + make_interval(months => n::int))::date AS due_date) d) s
             ORDER BY id, n
            """,
        ),
        (
            "balances, days past due, classification",
            """
            UPDATE loans_loan l SET
                   outstanding_principal = l.principal - s.paid,
                   interest_due = COALESCE(s.interest_owed, 0),
                   penalty_due = COALESCE(round(s.overdue_principal * l.penalty_rate / 360 * s.days, 2), 0),
                   days_past_due = s.days, max_days_past_due = s.days,
                   classification = CASE WHEN s.days >= 361 THEN 'loss' WHEN s.days >= 181 THEN 'doubtful'
                                         WHEN s.days >= 91 THEN 'substandard' WHEN s.days >= 1 THEN 'special_mention'
                                         ELSE 'normal' END
              FROM (SELECT loan_id, sum(principal_paid) AS paid,
                           sum(interest - interest_paid) FILTER (WHERE status IN ('due', 'overdue')) AS interest_owed,
                           sum(principal) FILTER (WHERE status = 'overdue') AS overdue_principal,
                           COALESCE(%(yesterday)s::date - min(due_date) FILTER (WHERE status = 'overdue'), 0) AS days
                      FROM loans_installment GROUP BY loan_id) s
             WHERE l.id = s.loan_id AND (s.paid > 0 OR s.interest_owed IS NOT NULL)
            """,
        ),
        (
            "line balances, suspended lines",
            """
            UPDATE loans_creditline c SET outstanding_principal = l.outstanding_principal,
                   status = CASE WHEN l.days_past_due > 0 THEN 'suspended' ELSE c.status END,
                   suspension = CASE WHEN l.days_past_due > 0 THEN 'overdue' ELSE '' END
              FROM loans_loan l WHERE l.line_id = c.id
            """,
        ),
    ]
    with transaction.atomic():
        with connection.cursor() as cursor:
            for label, sql in steps:
                step_began = time.perf_counter()
                cursor.execute(sql, params)
                print(f"  built {label} in {time.perf_counter() - step_began:.1f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE counties_farmer, loans_creditline, loans_loan, loans_installment")
    print(f"built {loans:,} open loans in {time.perf_counter() - began:.0f} s")


def book_describe() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*), count(*) FILTER (WHERE days_past_due > 0),
                   (SELECT count(*) FROM loans_installment), max(last_closed_date)
              FROM loans_loan WHERE status = 'active'
            """
        )
        loans, past_due, installments, closed = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM loans_installment WHERE status = 'scheduled' AND due_date = %s",
            [closed + dt.timedelta(days=1)],
        )
        due_next = cursor.fetchone()[0]
    return (
        f"{loans:,} open loans ({past_due:,} past due), {installments:,} installments; "
        f"closed to {closed}, {due_next:,} installments fall due on {closed + dt.timedelta(days=1)}"
    )


# --- Between nights -----------------------------------------------------------------------------


def between_nights(closed: dt.date) -> None:
    """The partner's debits of yesterday's installments succeed for 97 % of the loans (marked
    paid without a ledger posting: this book is for timing), then autovacuum's and the
    checkpointer's work is done before the clock starts."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH paid AS (
                UPDATE loans_installment SET status = 'paid', principal_paid = principal,
                       interest_paid = interest - subsidy, paid_on = due_date
                 WHERE status = 'due' AND due_date = %(closed)s AND (loan_id * 2654435761) %% 100 >= %(overdue_percent)s
                RETURNING loan_id, principal, interest - subsidy AS interest
            )
            UPDATE loans_loan l SET outstanding_principal = l.outstanding_principal - p.principal,
                   interest_due = l.interest_due - p.interest
              FROM paid p WHERE l.id = p.loan_id
            """,
            {"closed": closed, "overdue_percent": OVERDUE_PERCENT},
        )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {', '.join(BOOK_TABLES)}")
        try:
            cursor.execute("CHECKPOINT")
        except DatabaseError:  # needs pg_checkpoint on a managed server: skip
            pass


def quiet_machine(*, below: float = 15.0, patience: float = 300.0) -> float:
    """Wait (up to ``patience`` seconds) for the CPUs to be less than ``below`` % busy: other
    sessions share this machine. Returns the last reading."""
    deadline = time.monotonic() + patience
    busy = psutil.cpu_percent(interval=2.0)
    while busy >= below and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=2.0)
    return busy


class StatementClock:
    """Seconds per SQL statement of the close (``connection.execute_wrapper``), to show where a
    night's time goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds[" ".join(sql.split())[:90]] += time.perf_counter() - began

    def slowest(self, count: int = 5) -> list[tuple[str, float]]:
        return sorted(self.seconds.items(), key=lambda item: -item[1])[:count]


# --- Entry points --------------------------------------------------------------------------------


def one_run(county: County) -> dict:
    with schema_context(county.schema_name):
        closed = book_state()[2]
        between_nights(closed)
        print(f"  {book_describe()}")
    busy = quiet_machine()
    if busy >= 15:
        print(f"  note: the machine was still {busy:.0f}% busy with other work when this run started")
    day = closed + dt.timedelta(days=1)
    clock = StatementClock()
    with schema_context(county.schema_name), connection.execute_wrapper(clock):
        began = time.perf_counter()
        counts = loan_close_run(business_date=day)
        wall = time.perf_counter() - began
    with schema_context(county.schema_name):
        unbalanced = day_unbalanced_entries(day)
    if unbalanced:
        raise SystemExit(f"{day}: {unbalanced} journal entries of the close do not balance")
    return {"day": day, "wall": wall, "counts": counts, "slowest": clock.slowest()}


def day_unbalanced_entries(day: dt.date) -> int:
    """Untimed check after a run: the day's journal entries balance."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM (
                SELECT e.id FROM loans_journalentry e JOIN loans_journalline l ON l.entry_id = e.id
                 WHERE e.business_date = %s GROUP BY e.id HAVING sum(l.debit) <> sum(l.credit)) unbalanced
            """,
            [day],
        )
        return cursor.fetchone()[0]


def benchmark(*, loans: int = 1_000_000, runs: int = 3, rebuild: bool = False) -> list[dict]:
    """Run the benchmark; returns rows for ``python -m benchmarks``' table."""
    partner, _created = LendingPartner.objects.get_or_create(code=PARTNER["code"], defaults={"name": PARTNER["name"]})
    county = scratch_county()
    with schema_context(county.schema_name):
        open_loans, built_for, closed = book_state()
    stale = closed is not None and (closed - built_for).days > MAX_BOOK_AGE_DAYS
    if rebuild or open_loans != loans or stale:
        if open_loans:
            # The ledger refuses DELETE and TRUNCATE: the old book goes with the schema, which
            # is created again with the county's migrations.
            print(f"dropping the scratch county's old book ({open_loans:,} open loans)")
            with connection.cursor() as cursor:
                cursor.execute(f'DROP SCHEMA "{county.schema_name}" CASCADE')
            county.create_schema(check_if_exists=True, verbosity=0)
        with schema_context(county.schema_name):
            print(f"building {loans:,} open loans in {COUNTY['code']} {COUNTY['name']} (set-based; minutes)")
            book_build(loans=loans, day=timezone.localdate(), partner_id=partner.pk)
    results = []
    for index in range(runs):
        result = one_run(county)
        results.append(result)
        counts = result["counts"]
        print(
            f"run {index + 1}: {result['day']}: {result['wall']:.2f} s, "
            f"{counts['loans_closed'] / result['wall']:,.0f} loans/s; {counts}"
        )
        for sql, seconds in result["slowest"]:
            print(f"    {seconds:6.2f} s  {sql}")
    wall = statistics.median(r["wall"] for r in results)
    closed_loans = statistics.median(r["counts"]["loans_closed"] for r in results)
    # The work is PostgreSQL's; this process only sends statements.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"median of {len(results)}: {wall:.2f} s for one day of {closed_loans:,.0f} loans, "
        f"{closed_loans / wall:,.0f} loans/s (target: {TARGET_SECONDS:.0f} s)"
    )
    return [
        {
            "benchmark": f"nightly close, {closed_loans:,.0f} open loans, one day",
            "runs": len(results),
            "wall_s": wall,
            "rate": f"{closed_loans / wall:,.0f} loans/s",
            "peak_rss_mb": peak / MB,
            "target": f"≤ {TARGET_SECONDS:.0f} s",
            "met": wall <= TARGET_SECONDS,
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="build the scratch county's loan book again")
    options = parser.parse_args()
    benchmark(loans=options.loans, runs=options.runs, rebuild=options.rebuild)


if __name__ == "__main__":
    main()
