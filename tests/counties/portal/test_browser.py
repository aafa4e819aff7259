"""The officials' portal in a real Chromium: password → TOTP code (computed from the device key
with django_otp.oath.totp) → the dashboard's ECharts charts → the nightly-run page → rerun,
with the progress bar following the run a real Celery worker does. A screenshot of every step
goes to test-artifacts/portal/.

Like the farmer portal's browser test (tests/counties/mobile/test_browser.py): a throwaway
county is onboarded (committed) for this module and dropped afterwards, served by a live server
thread — pytest-django's ``live_server`` would flush the public schema's tenant registry.
Chromium resolves every ``*.localhost`` name to the loopback address by itself.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.db import connection, connections
from django.test.testcases import LiveServerThread
from django.utils import timezone
from django_tenants.utils import schema_context

from counties.models import NightlyRun
from platform.models import County, Domain, LendingPartner
from platform.services import county_onboard
from tests.conftest import COUNTY_ADMIN_PASSWORD, make_farmer, valid_id_number
from tests.counties.portal.conftest import code_for

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "portal"
COUNTY = {"code": "410222", "name": "通许县", "domain": "tongxu.localhost", "province": "河南省", "city": "开封市"}
PARTNER_CODE = "portal-browser-bank"
VIEWPORT = {"width": 1280, "height": 900}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="/usr/bin/chromium is missing (scripts/ensure_chromium.sh installs it); in CI this test must run",
    ),
]


def committed(work):
    """Run ``work`` on a connection of its own so what it writes is committed (the server
    thread and the worker see it); returns its result or raises its error."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture(scope="module")
def served(django_db_setup, django_db_blocker):
    """A committed throwaway county: townships, farmers with consents, lines and loans, an
    active policy, one finished nightly run and a TOTP device for its administrator; served
    over HTTP; dropped (schema, registry rows, partner) afterwards."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from counties.models import Official, Township, Village
    from counties.services import nightly_run
    from tests.data_sharing.test_consent import grant
    from tests.loans.test_features import CONSENTABLE, credit_partner
    from tests.loans.test_nightly_batch import activate_policy, activate_scorecard

    day = timezone.localdate()  # consents granted today count from today's business date on
    with django_db_blocker.unblock():
        county = county_onboard(**COUNTY, admin_password=COUNTY_ADMIN_PASSWORD).county
        server = None
        try:
            with schema_context(county.schema_name):
                partner = credit_partner(PARTNER_CODE)
                activate_policy(partner)
                activate_scorecard()
                for t, (code, name) in enumerate([("410222101", "城关镇"), ("410222102", "长智镇")]):
                    township = Township.objects.create(code=code, name=name)
                    village = Village.objects.create(township=township, code=f"{code}001", name=f"{name}一村")
                    for n in range(6):
                        farmer = make_farmer(
                            name=f"农户{t}{n}", id_number=valid_id_number(region=COUNTY["code"], seq=700 + 10 * t + n),
                            village=village,
                        )
                        if n % 3 != 2:
                            grant(farmer, partner, CONSENTABLE)
                admin = Official.objects.select_related("user").get(role=Official.Role.COUNTY_ADMIN)
                device = TOTPDevice.objects.create(user=admin.user, name="portal", confirmed=True)
                nightly_run(business_date=day)
            server = LiveServerThread("127.0.0.1", StaticFilesHandler)
            server.daemon = True
            server.start()
            server.is_ready.wait()
            if server.error:
                raise server.error
            yield {"county": county, "device": device, "day": day, "base": f"http://{COUNTY['domain']}:{server.port}"}
        finally:
            if server is not None:
                server.terminate()
            Domain.objects.filter(tenant__code=COUNTY["code"]).delete()
            County.objects.get(code=COUNTY["code"]).delete(force_drop=True)
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {LendingPartner._meta.db_table} WHERE code = %s", [PARTNER_CODE])


@pytest.fixture
def worker(served, celery_queue, django_db_blocker):
    """A Celery worker on this session's queue, running tasks in the schema they were sent from."""
    from celery.contrib.testing.worker import start_worker

    from platform.celery import app
    from tests.counties.test_nightly import _drain

    _drain(celery_queue)
    with django_db_blocker.unblock(), start_worker(
        app, pool="solo", perform_ping_check=False, queues=[celery_queue], shutdown_timeout=30
    ) as running:
        yield running


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
        yield context.new_page()
        context.close()
        browser.close()


def snap(page, number: int, step: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{number:02d}-{step}.png"), full_page=True)


def test_login_with_totp_dashboard_and_nightly_rerun_in_chromium(served, worker, db, page):
    # ``db`` before ``page``: Django refuses database work once Playwright's event loop runs.
    from django_otp.plugins.otp_totp.models import TOTPDevice

    base, day = served["base"], served["day"]
    device_id = served["device"].pk

    def device():
        with schema_context(served["county"].schema_name):
            return TOTPDevice.objects.get(pk=device_id)

    code = committed(lambda: code_for(device()))

    page.goto(f"{base}/portal/")
    assert page.url.startswith(f"{base}/portal/login/")
    snap(page, 1, "login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", COUNTY_ADMIN_PASSWORD)
    page.click("main button:has-text('下一步')")
    page.wait_for_url(re.compile(r".*/portal/login/code/.*"))
    snap(page, 2, "code")
    page.fill("input[name=token]", code)
    page.click("main button:has-text('登录')")
    page.wait_for_url(f"{base}/portal/")

    # The dashboard: figures, and the charts drawn from dashboard.json.
    page.wait_for_selector("[data-dashboard-url][data-loaded=true]", timeout=15000)
    assert page.locator("[data-chart=coverage] canvas").count() == 1
    assert page.locator("[data-figure=registered]").inner_text() == "12"
    snap(page, 3, "dashboard")

    # The nightly runs, then the rerun of the one run so far, followed to the end.
    page.click("nav.portal-nav >> text=夜间批处理")
    page.wait_for_url(f"{base}/portal/nightly/")
    snap(page, 4, "nightly")
    page.click(f"a[href='/portal/nightly/{day.isoformat()}/']")
    assert page.locator("[data-progress-status]").inner_text() == "已完成"
    page.click("[data-rerun] button")
    page.wait_for_url(f"{base}/portal/nightly/{day.isoformat()}/")
    assert "已重新排队" in page.inner_text(".messages")
    snap(page, 5, "rerun-queued")
    # The page polls the progress endpoint and reloads once the worker has finished.
    page.wait_for_function(
        "() => document.querySelector('[data-progress-status]').textContent.trim() === '已完成'", timeout=60000
    )
    assert page.locator("[data-progress-bar]").get_attribute("value") == "100"
    snap(page, 6, "rerun-finished")

    run = committed(lambda: _run(served, day))
    assert (run.status, run.attempts) == (NightlyRun.Status.SUCCEEDED, 2)
    assert [step["status"] for step in run.steps] == ["succeeded"] * len(run.steps)


def _run(served, day):
    with schema_context(served["county"].schema_name):
        return NightlyRun.objects.get(business_date=day)
