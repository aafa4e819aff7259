"""Benchmark: the whole nightly run (every ``settings.NIGHTLY_STEPS`` step: the loan close, the
credit assessment, consent expiry, purges, dashboards) of three counties of 300,000 farmers each,
on two Celery workers, from dispatch to the last county's ``NightlyRun`` finished.

    .venv/bin/python -m benchmarks.nightly_3x300k [--farmers 300000] [--runs 3] [--workers 2]

Runs in the database ``puhui_bench`` (benchmarks/_isolated.py; Redis database 5, so no
developer's worker takes these tasks), which it keeps: the counties take minutes to generate.
Three scratch counties (411322 方城县, 411323 西峡县, 411324 镇平县) are onboarded and filled
when missing: ``generate_county_data --farmers 300000`` (roster, government records, consents,
past loans), the default policy and scorecard, one nightly run (untimed) to give the eligible
farmers their lines, then a loan book built set-based like benchmarks/close_1m.py's — one
loan on every eleventh active line of at least 12,000 yuan (~7,000 loans per county, 5 % of the
lines), 3–12 months 等额本金 drawn over the past term, 3 % of them past due.

Each run is the next business date after the last one run (consecutive nights). Before it,
untimed: the partner's debits of the installments that fell due the day before succeed for 97 %
of the loans (benchmarks/close_1m.py's ``between_nights``), VACUUM ANALYZE, a CHECKPOINT, and a
wait of up to a minute for the machine to be quieter. Then:

* two ``celery worker --concurrency 1`` processes (``--workers``) on a queue of their own;
* ``counties.tasks.nightly_county`` sent for each county from inside its schema (what beat's
  ``dispatch_nightly`` does, without the stagger), in one burst;
* wall time from the first send to the moment all three ``NightlyRun`` rows are finished;
  each county's own time and its steps' seconds come from its ``NightlyRun``; the summed RSS of
  both workers' process trees is sampled every 100 ms.

Target: ≤ 120 s for the three counties (900,000 farmers; nightly_1m's target is 60 s for one
county of a million on a worker of concurrency 2, and here the close and the other steps run too).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform.settings")
django.setup()

import psutil  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import DatabaseError, connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from benchmarks._isolated import report, run_isolated  # noqa: E402
from benchmarks.close_1m import OVERDUE_PERCENT, between_nights, quiet_machine  # noqa: E402
from counties.models import Farmer, NightlyRun  # noqa: E402
from counties.tasks import nightly_county  # noqa: E402
from data_sharing.models import DataSharingAgreement  # noqa: E402
from loans.policy import policy_ensure_default  # noqa: E402
from loans.scorecards import scorecard_ensure_default  # noqa: E402
from platform.celery import app  # noqa: E402
from platform.models import County  # noqa: E402
from platform.services import county_onboard  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE = "puhui_bench"
COUNTIES = [
    {"code": "411322", "name": "方城县", "domain": "fangcheng.localhost", "province": "河南省", "city": "南阳市"},
    {"code": "411323", "name": "西峡县", "domain": "xixia.localhost", "province": "河南省", "city": "南阳市"},
    {"code": "411324", "name": "镇平县", "domain": "zhenping.localhost", "province": "河南省", "city": "南阳市"},
]
LOAN_EVERY = 11  # one loan per this many active lines: ≈ 9 % take-up
TARGET_SECONDS = 120.0
MB = 1024 * 1024


# --- The counties ------------------------------------------------------------------------------------


def scratch_counties(farmers: int) -> list[County]:
    counties = []
    for spec in COUNTIES:
        county = County.objects.filter(code=spec["code"]).first()
        if county is None:
            print(f"onboarding scratch county {spec['code']} {spec['name']}", flush=True)
            county = county_onboard(**spec, admin_password="bench-admin-pass-1").county  # noqa: S106 - scratch county
        with schema_context(county.schema_name):
            existing = Farmer.objects.count()
        if existing == 0:
            print(f"generating {farmers:,} farmers in {spec['code']} (generate_county_data); a minute or two", flush=True)
            call_command("generate_county_data", county=spec["code"], farmers=farmers, seed=int(spec["code"]))
        elif existing != farmers:
            raise SystemExit(f"county {spec['code']} has {existing:,} farmers, not {farmers:,}: drop the database "
                             f"{DATABASE} (or use --farmers {existing}) to start over")
        with schema_context(county.schema_name):
            agreement = DataSharingAgreement.objects.select_related("partner").first()
            policy_ensure_default(partner=agreement.partner, actor="benchmark")
            scorecard_ensure_default()
            if not NightlyRun.objects.exists():
                day = timezone.localdate() - dt.timedelta(days=1)
                print(f"first nightly run of {spec['code']} for {day} (untimed): lines for the eligible", flush=True)
                call_command("run_nightly", county=spec["code"], date=day.isoformat())
                book_build(day=day, partner_id=agreement.partner_id)
        counties.append(county)
    return counties


def book_build(*, day: dt.date, partner_id: int) -> None:
    """One loan on every LOAN_EVERY-th active line, closed up to ``day`` (benchmarks/close_1m.py's
    set-based builder, on the county's real lines instead of a roster of its own)."""
    began = time.perf_counter()
    params = {"day": day + dt.timedelta(days=1), "yesterday": day, "partner": partner_id, "every": LOAN_EVERY,
              "overdue_percent": OVERDUE_PERCENT}
    steps = [
        (
            "loans",
            # age: days since drawdown, 1 … (term × 30 − 2), spread by a multiplicative hash.
            """
            INSERT INTO loans_loan (farmer_id, line_id, partner_id, principal, annual_rate, penalty_rate, subsidy_share,
                                    term_months, method, start_date, maturity_date, status, disbursement,
                                    partner_reference, outstanding_principal, interest_due, subsidy_due, penalty_due,
                                    days_past_due, max_days_past_due, classification, last_closed_date, created_at)
            SELECT farmer_id, id, %(partner)s, term * 1000, 0.0435, 0.06525, 0, term, 'equal_principal', start_date,
                   (start_date + make_interval(months => term::int))::date, 'active', 'confirmed',
                   'bench-' || farmer_id, term * 1000,
                   0, 0, 0, 0, 0, 'normal', %(yesterday)s, now()
              FROM (SELECT id, farmer_id, 3 * (1 + farmer_id %% 4) AS term,
                           %(day)s::date - 1 - ((farmer_id * 7919) %% (3 * (1 + farmer_id %% 4) * 30 - 2))::int AS start_date
                      FROM loans_creditline
                     WHERE status = 'active' AND amount >= 12000 AND farmer_id %% %(every)s = 0
                       AND NOT EXISTS (SELECT 1 FROM loans_loan l WHERE l.line_id = loans_creditline.id)) s
             ORDER BY farmer_id
            """,
        ),
        (
            "installments",
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
                     CROSS JOIN LATERAL (SELECT (l.start_date + make_interval(months => n::int))::date AS due_date) d
                     WHERE l.status = 'active' AND NOT EXISTS (SELECT 1 FROM loans_installment i WHERE i.loan_id = l.id)) s
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
             WHERE l.id = s.loan_id AND l.partner_reference LIKE 'bench-%%' AND (s.paid > 0 OR s.interest_owed IS NOT NULL)
            """,
        ),
        (
            "line balances, suspended lines",
            """
            UPDATE loans_creditline c SET outstanding_principal = l.outstanding_principal,
                   status = CASE WHEN l.days_past_due > 0 THEN 'suspended' ELSE c.status END,
                   suspension = CASE WHEN l.days_past_due > 0 THEN 'overdue' ELSE '' END
              FROM loans_loan l WHERE l.line_id = c.id AND l.status = 'active' AND l.partner_reference LIKE 'bench-%%'
            """,
        ),
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        for label, sql in steps:
            step_began = time.perf_counter()
            cursor.execute(sql, params)
            print(f"  built {label}: {cursor.rowcount:,} rows in {time.perf_counter() - step_began:.1f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE loans_loan, loans_installment, loans_creditline")
    print(f"  loan book built in {time.perf_counter() - began:.0f} s", flush=True)


def last_day() -> dt.date:
    return NightlyRun.objects.order_by("-business_date").values_list("business_date", flat=True).first()


def describe_county() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT (SELECT count(*) FROM counties_farmer), (SELECT count(*) FROM loans_creditline
                        WHERE status = 'active'), (SELECT count(*) FROM loans_loan WHERE status = 'active'),
                      (SELECT count(*) FROM loans_loan WHERE status = 'active' AND days_past_due > 0)"""
        )
        farmers, lines, loans, past_due = cursor.fetchone()
    return f"{farmers:,} farmers, {lines:,} active lines, {loans:,} open loans ({past_due:,} past due)"


# --- The workers ---------------------------------------------------------------------------------------


class Workers:
    """``count`` celery workers, each its own process with concurrency 1, on one queue of their
    own; stopped by their pids only."""

    def __init__(self, *, count: int, queue: str) -> None:
        self.queue = queue
        self.names = [f"{queue}-{index}@benchmark" for index in range(count)]
        self.processes = [
            subprocess.Popen(  # noqa: S603 - this interpreter running celery, fixed arguments
                [sys.executable, "-m", "celery", "-A", "platform.celery", "worker", "--pool", "prefork",
                 "--concurrency", "1", "-Q", queue, "-n", name, "--loglevel", "WARNING", "--without-gossip",
                 "--without-mingle"],
                cwd=BASE_DIR, env={**os.environ, "DJANGO_SETTINGS_MODULE": "platform.settings"},
            )
            for name in self.names
        ]
        deadline = time.monotonic() + 120
        while len(app.control.ping(destination=self.names, timeout=1.0)) < count:
            if any(p.poll() is not None for p in self.processes) or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("the Celery workers did not start")

    def rss(self) -> int:
        total = 0
        for process in self.processes:
            try:
                main = psutil.Process(process.pid)
                for member in [main, *main.children(recursive=True)]:
                    total += member.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # warm shutdown
        for process in self.processes:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Sampler(threading.Thread):
    def __init__(self, workers: Workers) -> None:
        super().__init__(daemon=True)
        self.workers, self.peak, self.done = workers, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max(self.peak, self.workers.rss())


# --- One night -------------------------------------------------------------------------------------------


def one_run(counties: list[County], workers: Workers, day: dt.date) -> dict:
    for county in counties:
        with schema_context(county.schema_name):
            between_nights(day - dt.timedelta(days=1))
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE loans_creditassessment, counties_farmer")
    with connection.cursor() as cursor:
        try:
            cursor.execute("CHECKPOINT")
        except DatabaseError:
            pass
    busy = quiet_machine(below=30.0, patience=60.0)
    sampler = Sampler(workers)
    sampler.start()
    began = time.perf_counter()
    for county in counties:
        with schema_context(county.schema_name):
            nightly_county.apply_async(kwargs={"business_date": day.isoformat()}, queue=workers.queue)
    deadline = time.monotonic() + 1800
    runs: dict[str, NightlyRun] = {}
    while len(runs) < len(counties):
        for county in counties:
            if county.code in runs:
                continue
            with schema_context(county.schema_name):
                run = NightlyRun.objects.filter(business_date=day).first()
            if run and run.finished_at and run.status != NightlyRun.Status.RUNNING:
                runs[county.code] = run
        if time.monotonic() > deadline:
            raise SystemExit(f"{day}: not every county finished within 30 minutes")
        time.sleep(0.1)
    wall = time.perf_counter() - began
    sampler.done.set()
    sampler.join()
    failed = [code for code, run in runs.items() if run.status != NightlyRun.Status.SUCCEEDED]
    if failed:
        raise SystemExit(f"{day}: the nightly run failed in {failed}: {runs[failed[0]].error}")
    per_county = {}
    for code, run in runs.items():
        steps = {step["name"].rsplit(".", 1)[-1]: step["seconds"] for step in run.steps}
        close = next((step.get("counts", {}) for step in run.steps if step["name"].endswith("loan_close_run")), {})
        assess = next((step.get("counts", {}) for step in run.steps if step["name"].endswith("credit_assessment_run")), {})
        per_county[code] = {
            "seconds": (run.finished_at - run.started_at).total_seconds(),
            "steps": steps,
            "loans_closed": close.get("loans_closed", 0),
            "roster": assess.get("roster", 0),
        }
    return {"day": day, "wall": wall, "peak_rss": sampler.peak, "counties": per_county, "busy": busy}


def describe(result: dict) -> str:
    lines = [f"{result['day']}: {result['wall']:.1f} s from dispatch to the last county finished; peak RSS of the "
             f"workers {result['peak_rss'] / MB:,.0f} MB; CPU {result['busy']:.0f}% busy before the start"]
    for code, county in sorted(result["counties"].items()):
        steps = ", ".join(f"{name} {seconds:.1f}" for name, seconds in county["steps"].items())
        lines.append(f"    {code}: {county['seconds']:.1f} s ({county['roster']:,} farmers assessed, "
                     f"{county['loans_closed']:,} loans closed): {steps}")
    return "\n".join(lines)


# --- Entry points ------------------------------------------------------------------------------------------


def run_here(*, farmers: int, runs: int, workers: int) -> list[dict]:
    counties = scratch_counties(farmers)
    for county in counties:
        with schema_context(county.schema_name):
            print(f"{county.code} {county.name}: {describe_county()}", flush=True)
    pool = Workers(count=workers, queue=f"bench-nightly3-{os.getpid()}")
    results = []
    try:
        for index in range(runs):
            latest = []
            for county in counties:
                with schema_context(county.schema_name):
                    latest.append(last_day())
            day = max(latest) + dt.timedelta(days=1)
            result = one_run(counties, pool, day)
            results.append(result)
            print(f"run {index + 1}: {describe(result)}", flush=True)
    finally:
        pool.stop()
    walls = [r["wall"] for r in results]
    wall = statistics.median(walls)
    county_seconds = [c["seconds"] for r in results for c in r["counties"].values()]
    total_farmers = sum(c["roster"] for c in results[0]["counties"].values())
    peak = max(r["peak_rss"] for r in results)
    print(f"median of {len(results)}: {wall:.1f} s (spread {max(walls) - min(walls):.1f} s; runs "
          f"{', '.join(f'{w:.1f}' for w in walls)}), {total_farmers / wall:,.0f} farmers/s; one county's run: median "
          f"{statistics.median(county_seconds):.1f} s; peak RSS of the workers {peak / MB:,.0f} MB "
          f"(target {TARGET_SECONDS:.0f} s)", flush=True)
    return [{
        "benchmark": f"nightly run, 3 counties × {farmers:,} farmers + loans, {workers} workers (spread "
                     f"{max(walls) - min(walls):.1f} s; one county median {statistics.median(county_seconds):.1f} s)",
        "runs": len(results),
        "wall_s": wall,
        "rate": f"{total_farmers / wall:,.0f} farmers/s",
        "peak_rss_mb": peak / MB,
        "target": f"≤ {TARGET_SECONDS:.0f} s",
        "met": wall <= TARGET_SECONDS,
    }]


def benchmark(*, runs: int = 3, farmers: int = 300_000, workers: int = 2) -> list[dict]:
    """Run the benchmark; returns rows for ``python -m benchmarks``' table."""
    rows = run_isolated("benchmarks.nightly_3x300k", DATABASE,
                        ["--runs", str(runs), "--farmers", str(farmers), "--workers", str(workers)])
    if rows is not None:
        return rows
    return run_here(farmers=farmers, runs=runs, workers=workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--farmers", type=int, default=300_000, help="farmers per county")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (concurrency 1 each)")
    options = parser.parse_args()
    rows = benchmark(runs=options.runs, farmers=options.farmers, workers=options.workers)
    report(rows, DATABASE)


if __name__ == "__main__":
    main()
