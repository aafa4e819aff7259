"""Benchmark: 3,000 counties in one database — onboarding each, ``migrate_schemas`` of one new
migration across all of them, and the per-request cost of resolving a host to its county.

    .venv/bin/python -m benchmarks.many_counties [--counties 3000] [--runs 3] [--old-way 10]
                                                 [--processes 2] [--timed 200] [--compare-seconds 180] [--keep]

Runs in a database of its own, ``puhui_bench_counties`` (benchmarks/_isolated.py: created on the
configured PostgreSQL server, or the one ``DATABASE_URL`` names when it already ends in
``/puhui_bench_counties``), dropped at the end unless ``--keep``: 3,000 schemas of 55 tables
each are ~170,000 relations no other database should carry. The counties get valid-looking
codes no test or demo uses (provinces 62–65, prefectures 81–99) and ``b<code>.bench.localhost``
domains.

1. **Onboarding**: ``platform.services.county_onboard`` for every county (registry row, schema
   copied from the template, the no-op ``migrate_schemas`` of the new schema, domain, first
   administrator): the first ``--timed`` (200) one after another, each timed — the first one
   builds the template schema by running every county migration and is reported apart — then
   the rest by ``--processes`` processes at once (counties per second). ``--old-way N`` also times N schemas
   made the way onboarding did before the template (every county migration run in the schema).
2. **Migrations**: a throw-away tenant app (benchmarks/_noop_app, installed only by
   benchmarks/_noop_settings.py) brings new migrations (each adds a column to ``loans_loan``; ``--runs`` of them, up to 3, for a median);
   ``manage.py migrate_schemas --executor=batched`` (platform/migration_executor.py) applies it
   to every county with ``TENANT_MULTIPROCESSING_MAX_PROCESSES`` = ``--processes``, timed, with
   the peak of the summed resident memory of the command's process tree (sampled every 100 ms);
   then the same command again with every county current (what a deploy without a new migration
   costs). For comparison, django-tenants' ``--executor=multiprocessing`` applies a no-op
   migration for ``--compare-seconds`` (180) and is stopped: its rate comes from the counties it
   finished (measured before as 0.78 counties/s — about an hour for 3,000 — docs/SCALING.md).
3. **Tenant resolution**: ``platform.middleware.CountyTenantMiddleware.process_request`` for
   requests to random county hosts: *cold* (the host's cache entry deleted first: Redis miss,
   one indexed query of Domain ⋈ County, Redis set) and *cached* (Redis hit), median µs over
   2,000 requests per run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
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
from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402

from benchmarks._isolated import drop_database, isolated_env, percentile, report, run_isolated  # noqa: E402
from platform.middleware import CountyTenantMiddleware, tenant_cache_key  # noqa: E402
from platform.migration_executor import applied_by_schema  # noqa: E402
from platform.models import County, Domain  # noqa: E402
from platform.services import county_onboard  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE = "puhui_bench_counties"
PROVINCES = ("62", "63", "64", "65")
TARGET_ONBOARD_S = 1.0  # per county, median
TARGET_MIGRATE_S = 300.0  # one new migration across 3,000 counties
TARGET_RESOLVE_US = 2000.0  # cold lookup, median
RESOLVE_REQUESTS = 2000
MB = 1024 * 1024


def county_codes(count: int) -> list[str]:
    codes = [f"{province}{prefecture}{county:02d}" for province in PROVINCES for prefecture in range(81, 100)
             for county in range(1, 100)]
    if count > len(codes):
        raise SystemExit(f"at most {len(codes):,} counties")
    return codes[:count]


def domain_for(code: str) -> str:
    return f"b{code}.bench.localhost"


# --- 1. Onboarding ----------------------------------------------------------------------------------


def _onboard(code: str) -> float:
    started = time.perf_counter()
    county_onboard(code=code, name=f"基准县{code}", domain=domain_for(code), province="", city="",
                   admin_password="bench-admin-pass-1")  # noqa: S106 - scratch county
    return time.perf_counter() - started


def _onboard_many(codes: list[str]) -> list[float]:
    connection.close()  # a connection of this process's own
    seconds = [_onboard(code) for code in codes]
    connection.close()
    return seconds


def onboard_all(count: int, *, timed: int, processes: int) -> dict:
    """The first ``timed`` counties one after another, each timed (the first builds the
    template); the rest by ``processes`` processes at once, for the throughput."""
    codes = county_codes(count)
    present = set(County.objects.filter(code__in=codes).values_list("code", flat=True))
    todo = [code for code in codes if code not in present]
    print(f"onboarding {len(todo):,} counties ({len(present):,} already there): {min(timed, len(todo)):,} one "
          f"after another, timed, then the rest by {processes} processes", flush=True)
    seconds: list[float] = []
    began = time.perf_counter()
    for code in todo[:timed]:
        seconds.append(_onboard(code))
    sequential = time.perf_counter() - began
    rest = todo[timed:]
    bulk_began = time.perf_counter()
    if rest:
        slices = [rest[index::processes] for index in range(processes)]
        connection.close()
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            pending = pool.map_async(_onboard_many, slices)
            while not pending.ready():
                pending.wait(60)
                print(f"  {County.objects.count():,} counties in the database after "
                      f"{time.perf_counter() - bulk_began:.0f} s of the parallel part", flush=True)
            bulk_seconds = [value for part in pending.get() for value in part]
    bulk = time.perf_counter() - bulk_began
    first = seconds[0] if seconds and not present else None
    timed_rest = seconds[1:] if first is not None else seconds
    return {
        "onboarded": len(todo),
        "timed": len(timed_rest),
        "first_s": first,
        "median_s": statistics.median(timed_rest) if timed_rest else None,
        "p90_s": percentile(timed_rest, 0.9) if timed_rest else None,
        "max_s": max(timed_rest) if timed_rest else None,
        "sequential_s": sequential,
        "bulk": len(rest),
        "bulk_s": bulk,
        "bulk_median_s": statistics.median(bulk_seconds) if rest else None,
        "total_s": time.perf_counter() - began,
    }


def old_way(count: int) -> dict | None:
    """Schemas made by running every county migration (the path before the template), timed,
    then dropped: County rows of their own, never onboarded."""
    if count <= 0:
        return None
    seconds = []
    for index in range(count):
        code = f"6180{index + 1:02d}"
        County.objects.filter(code=code).delete()
        County.objects.bulk_create([County(schema_name=f"county_{code}", code=code, name="旧方式县")])
        county = County.objects.get(code=code)
        started = time.perf_counter()
        county.create_schema(check_if_exists=True, verbosity=0)
        seconds.append(time.perf_counter() - started)
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "county_{code}" CASCADE')
        County.objects.filter(pk=county.pk).delete()
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds), "n": count}


# --- 2. migrate_schemas -------------------------------------------------------------------------------


class TreeSampler(threading.Thread):
    """Peak of the summed RSS of a process and its children, every 100 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                main = psutil.Process(self.pid)
                tree = [main, *main.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            total = 0
            for process in tree:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak = max(self.peak, total)


def migrate(*, executor: str, target: str, processes: int, limit: float | None = None) -> dict:
    """``manage.py migrate_schemas --tenant --executor=<executor> bench_noop <target>``, timed, with
    the peak RSS of its process tree; stopped after ``limit`` seconds when given (then the rate
    comes from the schemas it finished)."""
    env = {
        **isolated_env(connection.settings_dict["NAME"]),
        "DJANGO_SETTINGS_MODULE": "benchmarks._noop_settings",
        "TENANT_MULTIPROCESSING_MAX_PROCESSES": str(processes),
    }
    command = [sys.executable, "manage.py", "migrate_schemas", "--tenant", f"--executor={executor}", "-v", "0",
               "bench_noop", target]
    started = time.perf_counter()
    # A session of its own, so a stop at the limit takes the forked workers too.
    process = subprocess.Popen(command, cwd=BASE_DIR, env=env, start_new_session=True)  # noqa: S603
    sampler = TreeSampler(process.pid)
    sampler.start()
    try:
        code = process.wait(timeout=limit)
        stopped = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        code, stopped = process.wait(), True  # stopped at the limit
    wall = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    if code != 0 and not stopped:
        raise SystemExit(f"migrate_schemas --executor={executor} failed ({code})")
    schemas = list(County.objects.exclude(schema_name="public").values_list("schema_name", flat=True))
    connection.set_schema_to_public()
    applied = applied_by_schema(connection, schemas)
    done = sum(1 for nodes in applied.values() if ("bench_noop", target) in nodes)
    stopped = stopped and done < len(schemas)  # finished everything before the limit after all
    if not stopped and done != len(schemas):
        raise SystemExit(f"{target} is missing from {len(schemas) - done:,} county schemas after the run")
    return {"executor": executor, "target": target, "wall_s": wall, "peak_rss": sampler.peak,
            "counties": len(schemas), "done": done, "stopped": stopped, "processes": processes}


# --- 3. Tenant resolution ----------------------------------------------------------------------------


def resolve_run(hosts: list[str], *, cold: bool) -> float:
    """Median µs of the middleware's process_request over the hosts."""
    middleware = CountyTenantMiddleware(lambda request: HttpResponse())
    factory = RequestFactory()
    requests = [factory.get("/m/", HTTP_HOST=host) for host in hosts]
    timings = []
    for host, request in zip(hosts, requests, strict=True):
        if cold:
            connection.set_schema_to_public()
            cache.delete(tenant_cache_key(host))
        started = time.perf_counter_ns()
        response = middleware.process_request(request)
        timings.append((time.perf_counter_ns() - started) / 1000)
        if response is not None:
            raise SystemExit(f"{host}: the middleware answered {response.status_code}")
    connection.set_schema_to_public()
    return statistics.median(timings)


def resolve(runs: int) -> dict:
    hosts_all = list(Domain.objects.filter(domain__endswith=".bench.localhost").values_list("domain", flat=True))
    rng = random.Random(7)
    cold, cached = [], []
    for _ in range(runs):
        hosts = [rng.choice(hosts_all) for _ in range(RESOLVE_REQUESTS)]
        cold.append(resolve_run(hosts, cold=True))
        for host in set(hosts):  # warm every host once, then time hits only
            resolve_run([host], cold=False)
        cached.append(resolve_run(hosts, cold=False))
    return {"cold_us": cold, "cached_us": cached, "hosts": len(hosts_all)}


# --- Entry points ----------------------------------------------------------------------------------


def spread(values: list[float]) -> float:
    return max(values) - min(values)


def first_text(seconds: float | None) -> str:
    return "n/a (counties were there)" if seconds is None else f"{seconds:.2f} s"


def run_here(*, counties: int, runs: int, old: int, processes: int, compare: float, timed: int) -> list[dict]:
    # The peak of this process and its forked onboarding processes, sampled (getrusage's
    # high-water mark would also hold what the process that exec'd this one had).
    sampler = TreeSampler(os.getpid())
    sampler.start()
    onboarding = onboard_all(counties, timed=timed, processes=processes)
    sampler.done.set()
    sampler.join()
    onboarding_peak = sampler.peak
    total = County.objects.count()
    print(
        f"onboarded {onboarding['onboarded']:,} in {onboarding['total_s']:.0f} s: first (template build) "
        f"{first_text(onboarding['first_s'])}, then {onboarding['timed']:,} one after another: median "
        f"{(onboarding['median_s'] or 0) * 1000:.0f} ms, p90 {(onboarding['p90_s'] or 0) * 1000:.0f} ms, max "
        f"{(onboarding['max_s'] or 0) * 1000:.0f} ms; then {onboarding['bulk']:,} by {processes} processes in "
        f"{onboarding['bulk_s']:.0f} s ({onboarding['bulk'] / max(onboarding['bulk_s'], 1e-9):.2f} counties/s, each "
        f"median {(onboarding['bulk_median_s'] or 0) * 1000:.0f} ms); {total:,} counties in the database; "
        f"peak RSS of the onboarding processes {onboarding_peak / MB:,.0f} MB",
        flush=True,
    )
    before = old_way(old)
    if before:
        print(f"old way (every county migration run in the schema): median {before['median_s']:.2f} s "
              f"(min {before['min_s']:.2f}, max {before['max_s']:.2f}, {before['n']} schemas)", flush=True)
    applied = [migrate(executor="batched", target=f"000{number}_add_column", processes=processes)
               for number in range(1, min(runs, 3) + 1)]
    current = migrate(executor="batched", target=f"000{len(applied)}_add_column", processes=processes)
    compared = migrate(executor="multiprocessing", target="0004_noop", processes=processes, limit=compare) if compare else None
    batched = {**applied[0], "wall_s": statistics.median(result["wall_s"] for result in applied),
               "spread_s": spread([result["wall_s"] for result in applied]),
               "peak_rss": max(result["peak_rss"] for result in applied), "runs": len(applied)}
    for result in (*applied, current, compared):
        if result is None:
            continue
        per = result["wall_s"] / max(result["done"], 1) * 1000
        print(f"migrate_schemas --executor={result['executor']} bench_noop {result['target']}: {result['done']:,} of "
              f"{result['counties']:,} counties in {result['wall_s']:.1f} s" + (" (stopped at the limit)" if result["stopped"] else "")
              + f", {per:.1f} ms per county, peak RSS of the command's processes {result['peak_rss'] / MB:,.0f} MB", flush=True)
    resolution = resolve(runs)
    cold, cached = resolution["cold_us"], resolution["cached_us"]
    print(f"tenant resolution over {resolution['hosts']:,} hosts, {runs} runs of {RESOLVE_REQUESTS:,} requests: "
          f"cold median {statistics.median(cold):.0f} µs (runs {', '.join(f'{v:.0f}' for v in cold)}), cached "
          f"median {statistics.median(cached):.0f} µs (runs {', '.join(f'{v:.0f}' for v in cached)})", flush=True)
    rows = [
        {
            "benchmark": f"onboard a county, {total:,} in the database (first, template build: "
                         f"{(onboarding['first_s'] or 0):.1f} s" + (f"; old way {before['median_s']:.2f} s)" if before else ")"),
            "runs": onboarding["timed"],
            "wall_s": onboarding["median_s"],
            "rate": f"p90 {(onboarding['p90_s'] or 0) * 1000:.0f} ms; {processes} procs: "
                    f"{onboarding['bulk'] / max(onboarding['bulk_s'], 1e-9):.2f}/s",
            "peak_rss_mb": onboarding_peak / MB,
            "target": f"median ≤ {TARGET_ONBOARD_S:.0f} s",
            "met": (onboarding["median_s"] or 0) <= TARGET_ONBOARD_S,
        }
    ]
    per_batched = batched["wall_s"] / batched["counties"]
    rows.append({
        "benchmark": f"migrate_schemas --executor=batched, 1 new migration (ADD COLUMN), {batched['counties']:,} counties, "
                     f"{processes} processes (spread {batched['spread_s']:.1f} s)",
        "runs": batched["runs"],
        "wall_s": batched["wall_s"],
        "rate": f"{per_batched * 1000:.1f} ms/county",
        "peak_rss_mb": batched["peak_rss"] / MB,
        "target": f"≤ {TARGET_MIGRATE_S:.0f} s",
        "met": batched["wall_s"] <= TARGET_MIGRATE_S,
    })
    rows.append({
        "benchmark": "… the same again, every county already current (a deploy with nothing new)",
        "runs": 1,
        "wall_s": current["wall_s"],
        "rate": f"{current['wall_s'] / current['counties'] * 1000:.1f} ms/county",
        "peak_rss_mb": current["peak_rss"] / MB,
        "target": f"≤ {TARGET_MIGRATE_S:.0f} s",
        "met": current["wall_s"] <= TARGET_MIGRATE_S,
    })
    if compared:
        per_compared = compared["wall_s"] / max(compared["done"], 1)
        rows.append({
            "benchmark": f"… django-tenants --executor=multiprocessing, 1 no-op migration: {compared['done']:,} counties in "
                         f"{compared['wall_s']:.0f} s" + (", stopped" if compared["stopped"] else "")
                         + f" (all {compared['counties']:,} ≈ {per_compared * compared['counties'] / 60:.0f} min; "
                         f"{per_compared / per_batched:.0f}× batched)",
            "runs": 1,
            "wall_s": compared["wall_s"],
            "rate": f"{per_compared * 1000:.1f} ms/county",
            "peak_rss_mb": compared["peak_rss"] / MB,
            "target": "comparison",
            "met": None,
        })
    rows.append({
        "benchmark": f"tenant resolution, {resolution['hosts']:,} hosts: cold (median µs; spread {spread(cold):.0f})",
        "runs": runs,
        "wall_s": statistics.median(cold) / 1e6,
        "rate": f"{statistics.median(cold):.0f} µs",
        "target": f"≤ {TARGET_RESOLVE_US:.0f} µs",
        "met": statistics.median(cold) <= TARGET_RESOLVE_US,
    })
    rows.append({
        "benchmark": f"tenant resolution, cached in Redis (median µs; spread {spread(cached):.0f})",
        "runs": runs,
        "wall_s": statistics.median(cached) / 1e6,
        "rate": f"{statistics.median(cached):.0f} µs",
        "target": "< cold",
        "met": statistics.median(cached) < statistics.median(cold),
    })
    return rows


def argv_of(*, counties: int, runs: int, old: int, processes: int, compare: float, timed: int, keep: bool) -> list[str]:
    return ["--counties", str(counties), "--runs", str(runs), "--old-way", str(old), "--processes", str(processes),
            "--timed", str(timed), "--compare-seconds", str(compare), *(["--keep"] if keep else [])]


def benchmark(*, runs: int = 3, counties: int = 3000, old: int = 10, processes: int = 2, compare: float = 180.0,
              timed: int = 200, keep: bool = False) -> list[dict]:
    """Run the benchmark; returns rows for ``python -m benchmarks``' table."""
    options = {"counties": counties, "runs": runs, "old": old, "processes": processes, "compare": compare,
               "timed": timed}
    rows = run_isolated("benchmarks.many_counties", DATABASE, argv_of(**options, keep=True))
    if rows is not None:
        if not keep:
            print(f"dropping database {DATABASE}", flush=True)
            drop_database(DATABASE)
        return rows
    rows = run_here(**options)
    if not keep:
        print(f"(database {DATABASE} is kept: drop it with `DROP DATABASE {DATABASE}` from another database, or run "
              f"without DATABASE_URL pointing at it and the benchmark drops it)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counties", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--old-way", type=int, default=10, help="schemas also made by running every migration")
    parser.add_argument("--processes", type=int, default=2,
                        help="processes onboarding the counties after the timed ones; TENANT_MULTIPROCESSING_MAX_PROCESSES")
    parser.add_argument("--timed", type=int, default=200, help="counties onboarded one after another, each timed")
    parser.add_argument("--compare-seconds", type=float, default=180.0,
                        help="run django-tenants' multiprocessing executor this long for the comparison (0: not at all)")
    parser.add_argument("--keep", action="store_true", help=f"keep the database {DATABASE}")
    options = parser.parse_args()
    rows = benchmark(runs=options.runs, counties=options.counties, old=options.old_way, processes=options.processes,
                     compare=options.compare_seconds, timed=options.timed, keep=options.keep)
    report(rows, DATABASE)


if __name__ == "__main__":
    main()
