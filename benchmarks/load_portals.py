"""Benchmark: the farmer portal and the bank API under load — 50 concurrent users per scenario
against gunicorn, from a separate load-generator process (locust, headless).

    .venv/bin/python -m benchmarks.load_portals [--users 50] [--duration 30] [--runs 3]
                                                [--workers 3] [--farmers 20000] [--scenario home …]
                                                [--conn-max-age 0]

Runs in the database ``puhui_bench`` (benchmarks/_isolated.py: on the configured PostgreSQL
server, with Redis database 5), which it keeps for the next run (``nightly_3x300k`` uses it
too; ``DROP DATABASE puhui_bench`` removes both). The three demo counties are set up there by
``manage.py setup_demo --farmers 20000`` when missing (20,000 farmers each, one nightly run, a
demo loan book). Then:

* gunicorn serves the project as ``make demo`` does (``python -m gunicorn platform.wsgi
  --workers 3``, DEBUG off), on a free port of 127.0.0.1; requests name the county by ``Host``;
* per scenario, ``--users`` farmers of the three counties with a phone (the login is by SMS)
  get a logged-in session (created in their county's session table, as the SMS login does) and
  a CSRF cookie — for the quote, farmers who can borrow now; the drawdown scenario
  gets a fresh pool of farmers with an active line, at least 1,000 yuan available, their
  consent in order and no loan in the last hour (the SMS code limit is 5 per phone per hour) —
  each draws 1,000 yuan once; the bank scenario gets an integration client of the demo bank for
  the three counties (created once, a rate limit far above the load);
* after a warm-up (10 s each of the home page and the quote, untimed: fresh gunicorn workers
  compile templates and fill caches on their first requests),
  ``locust --headless --users N --spawn-rate N --run-time D`` runs one scenario
  (benchmarks/_locustfile.py) at a time, closed loop, no think time; its CSV statistics give
  requests/s, p50 and p99 (locust rounds percentiles above 100 ms to 10 ms) and the failures —
  a wrong status or a page without what it must show.

Prints each run; the table shows, per scenario, the median over runs of p99 (``median s``),
requests/s and p50, with their spreads (max − min over runs). The target: no error at all, and
p99 ≤ 2 s with 50 users on this 2-core machine, where gunicorn, PostgreSQL, Redis and the load
generator share the two cores.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import import_module
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from benchmarks._isolated import isolated_env, report, run_isolated  # noqa: E402
from counties.mobile.auth import SESSION_FARMER  # noqa: E402
from loans.models import CreditLine, Loan  # noqa: E402
from platform.management.commands.setup_demo import DEMO_COUNTIES, DEMO_PARTNER  # noqa: E402
from platform.models import County, IntegrationClient, LendingPartner  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE = "puhui_bench"
SCENARIOS = {
    # scenario: (locust user class, the request row reported, what it is)
    "home": ("HomeUser", "farmer home /m/", "farmer home page /m/"),
    "quote": ("QuoteUser", "borrow quote /m/borrow/preview/", "borrow quote (portal preview)"),
    "drawdown": ("DrawdownUser", "drawdown 3: confirm", "drawdown (confirm POST: code, loan, ledger, outbox)"),
    "lines": ("LinesUser", "bank lines sync", "bank lines sync (signed GET, cursor)"),
}
TARGET_P99_S = 2.0
WARM_UP_SECONDS = 10  # per warm-up scenario, before the first run
BANK_CLIENT = "负载基准测试银行系统"


# --- Data ---------------------------------------------------------------------------------------------


def demo_counties(farmers: int) -> list[County]:
    codes = [spec["code"] for spec in DEMO_COUNTIES]
    if County.objects.filter(code__in=codes).count() < len(codes):
        print(f"setting up the demo counties (setup_demo --farmers {farmers}); this takes minutes", flush=True)
        call_command("setup_demo", farmers=farmers)
    return list(County.objects.filter(code__in=codes).order_by("code"))


def loan_terms(county: County) -> tuple[list[int], list[str]]:
    from counties.mobile.loans_selectors import borrow_offer

    with schema_context(county.schema_name):
        line = CreditLine.objects.filter(status="active").first()
        offer = borrow_offer(line=line)
        return [term["value"] for term in offer.terms], [method["value"] for method in offer.methods]


def farmer_sessions(counties: list[County], count: int, *, borrowers: bool, can_borrow: bool = False) -> list[dict]:
    """``count`` farmers spread over the counties, each with a new logged-in session. With
    ``can_borrow``: farmers who can draw 1,000 yuan now (line active, consent in order); borrowers
    also have not borrowed in the last hour."""
    can_borrow = can_borrow or borrowers
    from counties.mobile.selectors import line_status

    store = import_module(settings.SESSION_ENGINE).SessionStore
    today = timezone.localdate()
    hour_ago = timezone.now() - dt.timedelta(hours=1)
    result: list[dict] = []
    per_county = -(-count // len(counties))
    for county in counties:
        terms, methods = loan_terms(county)
        host = county.domains.get(is_primary=True).domain
        with schema_context(county.schema_name):
            # Farmers log in (and confirm a drawdown) with an SMS code: only those with a phone.
            lines = CreditLine.objects.filter(status="active", valid_until__gte=today, amount__gte=1000).exclude(
                farmer__phone_hash=""
            )
            if borrowers:
                lines = lines.exclude(farmer_id__in=Loan.objects.filter(created_at__gte=hour_ago).values("farmer_id"))
            lines = list(lines.select_related("farmer").order_by("?")[: per_county * 2])
            made = 0
            for line in lines:
                if made == per_county:
                    break
                if can_borrow:
                    status = line_status(farmer=line.farmer)
                    if status.state != "active" or status.needs_consent_action or status.line.available < 1000:
                        continue
                session = store()
                session[SESSION_FARMER] = line.farmer_id
                session.create()
                result.append({
                    "host": host, "session": session.session_key, "csrf": secrets.token_hex(16),
                    "available": str(line.available), "terms": terms, "methods": methods,
                    "term": 6 if 6 in terms else terms[0], "method": methods[0],
                })
                made += 1
        if made < per_county:
            raise SystemExit(f"only {made} suitable farmers in {county.code}, {per_county} needed")
    return result[:count]


def bank_client(counties: list[County]) -> dict:
    """The demo bank's integration client for the three counties (made once; a new secret each run)."""
    from platform.api.services import client_create, client_rotate

    partner = LendingPartner.objects.get(code=DEMO_PARTNER)
    client = IntegrationClient.objects.filter(name=BANK_CLIENT, is_active=True).first()
    if client is None:
        created = client_create(name=BANK_CLIENT, kind="bank", partner=partner, counties=counties,
                                operator="benchmark", throttle_rate="1000000/min")
    else:
        created = client_rotate(client=client, operator="benchmark")
    return {"key_id": created.client.key_id, "secret": created.secret, "counties": [c.code for c in counties]}


# --- gunicorn and locust ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Web:
    """gunicorn as ``make demo`` starts it, on a free port; stopped by its pid only."""

    def __init__(self, *, workers: int, sms_file: str, conn_max_age: int = 0) -> None:
        self.port = free_port()
        env = {**isolated_env(DATABASE), "DEBUG": "false", "SMS_FILE_PATH": sms_file,
               "CONN_MAX_AGE": str(conn_max_age)}
        self.log = open(Path(tempfile.gettempdir()) / f"puhui-load-web-{self.port}.log", "w")
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter running gunicorn, fixed arguments
            [sys.executable, "-m", "gunicorn", "platform.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(workers), "--access-logfile", "/dev/null"],
            cwd=BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{self.port}/healthz", headers={"Host": "localhost"})
                with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - our own server
                    if response.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start; see {self.log.name}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def locust_run(*, scenario: str, data: dict, port: int, users: int, duration: int, workdir: str) -> dict:
    user_class, row_name, _label = SCENARIOS[scenario]
    data_file = Path(workdir) / f"{scenario}.json"
    data_file.write_text(json.dumps(data))
    prefix = Path(workdir) / scenario
    command = [
        sys.executable, "-m", "locust", "-f", str(BASE_DIR / "benchmarks" / "_locustfile.py"), "--headless",
        "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{duration}s", "--stop-timeout", "10",
        "--host", f"http://127.0.0.1:{port}", "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
        "--exit-code-on-error", "0", user_class,
    ]
    completed = subprocess.run(  # noqa: S603 - this interpreter running locust, fixed arguments
        command, cwd=BASE_DIR, env={**os.environ, "PUHUI_LOAD_DATA": str(data_file)},
        capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"locust failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    rows = {row["Name"]: row for row in csv.DictReader(open(f"{prefix}_stats.csv"))}
    failures = sum(int(row["Failure Count"]) for name, row in rows.items() if name != "Aggregated")
    errors_file = Path(f"{prefix}_failures.csv")
    reasons = [f"{row['Name']}: {row['Error']} ×{row['Occurrences']}" for row in csv.DictReader(open(errors_file))] \
        if errors_file.exists() else []
    row = rows[row_name]
    flow = rows.get("drawdown flow")
    return {
        "rps": float(row["Requests/s"]),
        "p50": float(row["50%"]) / 1000,
        "p99": float(row["99%"]) / 1000,
        "requests": int(row["Request Count"]),
        "failures": failures,
        "reasons": reasons,
        "flow_p50": float(flow["50%"]) / 1000 if flow else None,
        "flow_p99": float(flow["99%"]) / 1000 if flow else None,
        "all_rps": float(rows["Aggregated"]["Requests/s"]),
    }


# --- Entry points -----------------------------------------------------------------------------------------


def run_here(*, runs: int, users: int, duration: int, workers: int, farmers: int, scenarios: list[str],
             conn_max_age: int) -> list[dict]:
    counties = demo_counties(farmers)
    print(f"counties: {', '.join(f'{c.code} {c.name}' for c in counties)}; {users} users, {duration} s per run, "
          f"gunicorn --workers {workers}, CONN_MAX_AGE={conn_max_age}", flush=True)
    results: dict[str, list[dict]] = {scenario: [] for scenario in scenarios}
    with tempfile.TemporaryDirectory(prefix="puhui-load-") as workdir:
        web = Web(workers=workers, sms_file=str(Path(workdir) / "sms.jsonl"), conn_max_age=conn_max_age)
        try:
            # Untimed: new gunicorn workers compile templates and fill their caches on their first
            # requests (the first home-page run measured 3× slower without this).
            for scenario in ("home", "quote"):
                locust_run(scenario=scenario, data={"farmers": farmer_sessions(counties, users, borrowers=False,
                                                                                  can_borrow=True)},
                           port=web.port, users=users, duration=WARM_UP_SECONDS, workdir=workdir)
            for index in range(runs):
                for scenario in scenarios:
                    data: dict = {}
                    if scenario == "home":  # any farmer with a line
                        data["farmers"] = farmer_sessions(counties, users, borrowers=False)
                    elif scenario == "quote":  # farmers on the borrow screen: they can borrow
                        data["farmers"] = farmer_sessions(counties, users, borrowers=False, can_borrow=True)
                    elif scenario == "drawdown":
                        # More borrowers than the run can use: each draws once.
                        data["borrowers"] = farmer_sessions(counties, max(users, 60 * duration), borrowers=True)
                    else:
                        data["bank"] = bank_client(counties)
                    result = locust_run(scenario=scenario, data=data, port=web.port, users=users, duration=duration,
                                        workdir=workdir)
                    results[scenario].append(result)
                    flow = (f"; whole flow p50 {result['flow_p50'] * 1000:.0f} ms, p99 {result['flow_p99'] * 1000:.0f} ms, "
                            f"{result['all_rps']:.1f} requests/s in all" if result["flow_p50"] is not None else "")
                    print(f"run {index + 1} {scenario}: {result['requests']:,} requests, {result['rps']:.1f}/s, "
                          f"p50 {result['p50'] * 1000:.0f} ms, p99 {result['p99'] * 1000:.0f} ms, "
                          f"{result['failures']} errors{flow}", flush=True)
                    for reason in result["reasons"][:5]:
                        print(f"    {reason}", flush=True)
        finally:
            web.stop()
    rows = []
    for scenario in scenarios:
        measured = results[scenario]
        p99 = [r["p99"] for r in measured]
        p50 = [r["p50"] for r in measured]
        rps = [r["rps"] for r in measured]
        errors = sum(r["failures"] for r in measured)
        print(f"{scenario}: median of {len(measured)}: {statistics.median(rps):.1f} requests/s (spread "
              f"{max(rps) - min(rps):.1f}), p50 {statistics.median(p50) * 1000:.0f} ms (spread "
              f"{(max(p50) - min(p50)) * 1000:.0f}), p99 {statistics.median(p99) * 1000:.0f} ms (spread "
              f"{(max(p99) - min(p99)) * 1000:.0f}), {errors} errors", flush=True)
        rows.append({
            "benchmark": f"{SCENARIOS[scenario][2]}, {users} users"
                         + (f", CONN_MAX_AGE={conn_max_age}" if conn_max_age else "") + f" (p50 {statistics.median(p50) * 1000:.0f} ms "
                         f"±{(max(p50) - min(p50)) * 500:.0f}; p99 spread {(max(p99) - min(p99)) * 1000:.0f} ms; "
                         f"{errors} errors)",
            "runs": len(measured),
            "wall_s": statistics.median(p99),
            "rate": f"{statistics.median(rps):,.1f} req/s ±{(max(rps) - min(rps)) / 2:,.1f}",
            "target": f"0 errors, p99 ≤ {TARGET_P99_S:.0f} s (wall column: p99)",
            "met": errors == 0 and statistics.median(p99) <= TARGET_P99_S,
        })
    return rows


def benchmark(*, runs: int = 3, users: int = 50, duration: int = 30, workers: int = 3, farmers: int = 20000,
              scenarios: list[str] | None = None, conn_max_age: int = 0) -> list[dict]:
    """Run the benchmark; returns rows for ``python -m benchmarks``' table."""
    scenarios = scenarios or list(SCENARIOS)
    argv = ["--runs", str(runs), "--users", str(users), "--duration", str(duration), "--workers", str(workers),
            "--farmers", str(farmers), "--conn-max-age", str(conn_max_age), *[arg for scenario in scenarios for arg in ("--scenario", scenario)]]
    rows = run_isolated("benchmarks.load_portals", DATABASE, argv)
    if rows is not None:
        return rows
    return run_here(runs=runs, users=users, duration=duration, workers=workers, farmers=farmers, scenarios=scenarios,
                    conn_max_age=conn_max_age)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=int, default=30, help="seconds of load per scenario and run")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (make demo: 3)")
    parser.add_argument("--farmers", type=int, default=20000, help="farmers per demo county when set up here")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="only these (repeatable)")
    parser.add_argument("--conn-max-age", type=int, default=0,
                        help="gunicorn's CONN_MAX_AGE (the settings' default 0: a new database connection per request)")
    options = parser.parse_args()
    rows = benchmark(runs=options.runs, users=options.users, duration=options.duration, workers=options.workers,
                     farmers=options.farmers, scenarios=options.scenario, conn_max_age=options.conn_max_age)
    report(rows, DATABASE)


if __name__ == "__main__":
    main()
