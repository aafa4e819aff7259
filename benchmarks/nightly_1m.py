"""Benchmark: the nightly credit assessment of one county of 1,000,000 farmers on a real Celery
worker (prefork, concurrency 2), against PostgreSQL's COPY floor for the same rows.

    .venv/bin/python -m benchmarks.nightly_1m [--farmers 1000000] [--runs 3] [--concurrency 2]
                                              [--chunk-size 50000] [--keep]

Works in a scratch county (411328 唐河县, tanghe.localhost), onboarded here if missing and
filled, when it has no roster, by ``manage.py generate_county_data --county 411328 --farmers
1000000 --seed 2`` (roster, government records, the demo partner's agreement, consents, past
loans). The county's credit state (runs, assessments, lines) is emptied first, so run 1 creates
every line; runs 2… are the following business dates, as on consecutive nights (new
assessments, lines updated). Before each run, untimed, what a day between nights does (VACUUM
ANALYZE of the credit tables, a CHECKPOINT), and a wait of up to 5 minutes for the machine to be
quiet (other sessions share it; a note is printed when it was not). Each run:

* sends ``loans.tasks.credit_assessment_county`` to a queue of its own, consumed by one
  ``celery worker --concurrency N`` started here as a subprocess; wall time runs from the send
  to the run's finish (planning, the chord of chunks, the PSI), i.e. what the portal shows;
* samples resident memory every 50 ms: the worker (main process + pool children) and this
  process, summed;
* then, in the same process and database, times the floor: COPY the run's assessment rows and
  the lines out (TO STDOUT) and into empty tables with the same indexes (FROM STDIN, committed).

Prints each run and the medians; the targets are 60 s and 4 × the floor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform.settings")
django.setup()

import psutil  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import DatabaseError, connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from counties.models import Farmer  # noqa: E402
from data_sharing.models import DataSharingAgreement, GovernmentRecord  # noqa: E402
from loans.models import AssessmentRun  # noqa: E402
from loans.nightly import DEFAULT_CHUNK_SIZE  # noqa: E402
from loans.policy import policy_ensure_default  # noqa: E402
from loans.scorecards import scorecard_ensure_default  # noqa: E402
from loans.tasks import credit_assessment_county  # noqa: E402
from platform.celery import app  # noqa: E402
from platform.models import County  # noqa: E402
from platform.services import county_onboard  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
COUNTY = {"code": "411328", "name": "唐河县", "domain": "tanghe.localhost", "province": "河南省", "city": "南阳市"}
SEED = 2
TARGET_SECONDS = 60.0
TARGET_RATIO = 4.0
CREDIT_TABLES = ("loans_creditline", "loans_creditassessment", "loans_assessmentchunk", "loans_assessmentrun")
MB = 1024 * 1024


# --- The county ----------------------------------------------------------------------------------


def scratch_county(farmers: int) -> County:
    county = County.objects.filter(code=COUNTY["code"]).first()
    if county is None:
        print(f"onboarding scratch county {COUNTY['code']} {COUNTY['name']}")
        county = county_onboard(**COUNTY).county
    with schema_context(county.schema_name):
        existing = Farmer.objects.count()
    if existing == 0:
        print(f"generating {farmers:,} farmers with government data (generate_county_data --seed {SEED}); this takes minutes")
        call_command("generate_county_data", county=COUNTY["code"], farmers=farmers, seed=SEED)
    elif existing < farmers:
        raise SystemExit(
            f"county {COUNTY['code']} has {existing:,} farmers, fewer than {farmers:,}; regenerate it with manage.py "
            f"generate_county_data --county {COUNTY['code']} --farmers {farmers} --seed {SEED} --replace"
        )
    return county


def credit_setup() -> tuple[int, int]:
    """The active policy and scorecard (the shipped defaults, for the partner the county's
    data-sharing agreement names); returns the roster size and the government records."""
    agreement = DataSharingAgreement.objects.select_related("partner").order_by("-effective_from").first()
    if agreement is None:
        raise SystemExit(
            f"county {COUNTY['code']} has no data-sharing agreement, so the gate would admit nobody: regenerate it "
            f"with government data (generate_county_data --county {COUNTY['code']} --seed {SEED} --replace)"
        )
    policy_ensure_default(partner=agreement.partner, actor="benchmark")
    scorecard_ensure_default()
    return Farmer.objects.count(), GovernmentRecord.objects.count()


def credit_state_clear() -> None:
    """Empty the credit tables. Lines are referenced by loans (whose ledger is append-only, so
    no TRUNCATE … CASCADE), hence DELETE for lines and assessments; the county has no loans."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM loans_loan)")
        if cursor.fetchone()[0]:
            raise SystemExit(f"county {COUNTY['code']} has loans; the benchmark needs a county without any")
        cursor.execute("DELETE FROM loans_creditline")
        cursor.execute("DELETE FROM loans_creditassessment")
        cursor.execute("TRUNCATE loans_assessmentchunk, loans_assessmentrun")
        for table in CREDIT_TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")


# --- The worker -----------------------------------------------------------------------------------


class Worker:
    """``celery worker`` as a subprocess on a queue of its own; stopped by its pid only."""

    def __init__(self, *, concurrency: int, queue: str) -> None:
        self.queue = queue
        self.name = f"{queue}@benchmark"
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter running celery, fixed arguments
            [
                sys.executable, "-m", "celery", "-A", "platform.celery", "worker", "--pool", "prefork",
                "--concurrency", str(concurrency), "-Q", queue, "-n", self.name, "--loglevel", "WARNING",
                "--without-gossip", "--without-mingle",
            ],
            cwd=BASE_DIR, env={**os.environ, "DJANGO_SETTINGS_MODULE": "platform.settings"},
        )
        deadline = time.monotonic() + 120
        while not app.control.ping(destination=[self.name], timeout=1.0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the Celery worker did not start")

    def tree(self) -> list[psutil.Process]:
        try:
            main = psutil.Process(self.process.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RssSampler(threading.Thread):
    """Peak of the summed resident memory of the worker tree and this process (which sends the
    run and polls it), sampled every 50 ms while the batch runs."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.05):
            total = 0
            for process in [psutil.Process(), *self.worker.tree()]:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


# --- One run and its floor -------------------------------------------------------------------------


@dataclass
class RunResult:
    business_date: dt.date
    wall: float
    farmers: int
    peak_rss: int
    floor_assessments: float
    floor_lines: float
    counts: dict

    @property
    def floor(self) -> float:
        return self.floor_assessments + self.floor_lines

    @property
    def ratio(self) -> float:
        return self.wall / self.floor


def assess_on_worker(county: County, worker: Worker, day: dt.date, chunk_size: int) -> tuple[float, int, AssessmentRun]:
    sampler = RssSampler(worker)
    sampler.start()
    began = time.perf_counter()
    with schema_context(county.schema_name):
        credit_assessment_county.apply_async(
            kwargs={"business_date": day.isoformat(), "chunk_size": chunk_size}, queue=worker.queue
        )
        deadline = time.monotonic() + 900
        while True:
            run = AssessmentRun.objects.filter(business_date=day).first()
            if run and run.finished_at and run.status != AssessmentRun.Status.RUNNING:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{day}: the run did not finish within 15 minutes")
            time.sleep(0.05)
    wall = time.perf_counter() - began
    peak = sampler.stop()
    if run.status != AssessmentRun.Status.SUCCEEDED:
        raise SystemExit(f"{day}: run {run.status}: {run.error}")
    return wall, peak, run


def copy_floor(select_sql: str, params: list, like_table: str) -> float:
    """Seconds to COPY the rows ``select_sql`` returns out of PostgreSQL and into an empty table
    with ``like_table``'s indexes and constraints (committed)."""
    scratch = f"bench_floor_{like_table}"
    buffer = io.BytesIO()
    with connection.cursor() as django_cursor:
        cursor = django_cursor.cursor
        cursor.execute(f"DROP TABLE IF EXISTS {scratch}")
        cursor.execute(f"CREATE TABLE {scratch} (LIKE {like_table} INCLUDING ALL)")
        began = time.perf_counter()
        with cursor.copy(cursor.mogrify(f"COPY ({select_sql}) TO STDOUT", params)) as copy:
            for block in copy:
                buffer.write(block)
        with transaction.atomic():
            with cursor.copy(f"COPY {scratch} FROM STDIN") as copy:
                copy.write(buffer.getbuffer())
        seconds = time.perf_counter() - began
        cursor.execute(f"DROP TABLE {scratch}")
    return seconds


def between_nights() -> None:
    """What a day between two nights does, untimed: autovacuum has visited the credit tables
    and checkpoints have written their pages out."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE loans_creditassessment, loans_creditline")
        try:
            cursor.execute("CHECKPOINT")
        except DatabaseError:  # needs pg_checkpoint on a managed server: skip
            pass


def quiet_machine(*, below: float = 15.0, patience: float = 300.0) -> float:
    """Wait (up to ``patience`` seconds) for the CPUs to be less than ``below`` % busy: other
    sessions' tests and servers share this machine and slow the run and the floor alike.
    Returns the last reading."""
    deadline = time.monotonic() + patience
    busy = psutil.cpu_percent(interval=2.0)
    while busy >= below and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=2.0)
    return busy


def one_run(county: County, worker: Worker, day: dt.date, chunk_size: int) -> RunResult:
    with schema_context(county.schema_name):
        between_nights()
    busy = quiet_machine()
    if busy >= 15:
        print(f"  note: the machine was still {busy:.0f}% busy with other work when this run started")
    wall, peak, run = assess_on_worker(county, worker, day, chunk_size)
    with schema_context(county.schema_name):
        floor_assessments = copy_floor(
            "SELECT * FROM loans_creditassessment WHERE business_date = %s", [day], "loans_creditassessment"
        )
        floor_lines = copy_floor("SELECT * FROM loans_creditline", [], "loans_creditline")
    return RunResult(
        business_date=day, wall=wall, farmers=run.counts["roster"], peak_rss=peak,
        floor_assessments=floor_assessments, floor_lines=floor_lines, counts=run.counts,
    )


def describe(result: RunResult) -> str:
    counts = result.counts
    phases = ", ".join(f"{name} {value:.1f}" for name, value in counts.get("phase_seconds", {}).items())
    return (
        f"{result.business_date}: {result.wall:.2f} s, {result.farmers / result.wall:,.0f} farmers/s, "
        f"peak RSS {result.peak_rss / MB:,.0f} MB (worker + parent); floor {result.floor:.2f} s "
        f"(assessments {result.floor_assessments:.2f} + lines {result.floor_lines:.2f}), ratio {result.ratio:.2f}\n"
        f"    scored {counts['scored']:,}, eligible {counts['eligible']:,}, new {counts['lines_new']:,}, "
        f"up {counts['lines_up']:,}, down {counts['lines_down']:,}, frozen {counts['frozen']:,}; "
        f"chunk seconds summed over workers: {phases}"
    )


# --- Entry points ----------------------------------------------------------------------------------


def benchmark(*, farmers: int = 1_000_000, runs: int = 3, concurrency: int = 2, chunk_size: int = DEFAULT_CHUNK_SIZE,
              keep: bool = False) -> list[dict]:
    """Run the benchmark; returns rows for ``python -m benchmarks``' table."""
    county = scratch_county(farmers)
    with schema_context(county.schema_name):
        roster, records = credit_setup()
        credit_state_clear()
    print(f"county {COUNTY['code']} {COUNTY['name']}: {roster:,} farmers, {records:,} government records; "
          f"chunks of {chunk_size:,}, worker concurrency {concurrency}")
    worker = Worker(concurrency=concurrency, queue=f"bench-nightly-{os.getpid()}")
    results: list[RunResult] = []
    try:
        first_day = timezone.localdate()
        for index in range(runs):
            result = one_run(county, worker, first_day + dt.timedelta(days=index), chunk_size)
            results.append(result)
            print(f"run {index + 1}: {describe(result)}")
    finally:
        worker.stop()
        if not keep:
            with schema_context(county.schema_name):
                credit_state_clear()
    # This process's own high-water mark includes the floor's COPY buffer, which is not the batch's.
    harness_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    wall = statistics.median(r.wall for r in results)
    floor = statistics.median(r.floor for r in results)
    ratio = statistics.median(r.ratio for r in results)
    peak = max(r.peak_rss for r in results)
    print(
        f"median of {len(results)}: {wall:.2f} s, {roster / wall:,.0f} farmers/s; floor {floor:.2f} s; ratio {ratio:.2f}; "
        f"peak RSS during the batch {peak / MB:,.0f} MB (worker tree + parent; the parent's high-water mark with "
        f"the floor's COPY buffer: {harness_peak / MB:,.0f} MB) (targets: {TARGET_SECONDS:.0f} s, ratio {TARGET_RATIO:.0f})"
    )
    return [{
        "benchmark": f"nightly assessment, {roster:,} farmers, concurrency {concurrency}",
        "runs": len(results),
        "wall_s": wall,
        "rate": f"{roster / wall:,.0f} farmers/s",
        "peak_rss_mb": peak / MB,
        "floor_s": floor,
        "ratio": ratio,
        "target": f"≤ {TARGET_SECONDS:.0f} s, ≤ {TARGET_RATIO:.0f}× floor",
        "met": wall <= TARGET_SECONDS and ratio <= TARGET_RATIO,
    }]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--farmers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--keep", action="store_true", help="keep the last run's assessments and lines")
    options = parser.parse_args()
    benchmark(farmers=options.farmers, runs=options.runs, concurrency=options.concurrency,
              chunk_size=options.chunk_size, keep=options.keep)


if __name__ == "__main__":
    main()
