"""The farmer portal in a real Chromium at 360 × 640: log in by SMS code, consent, see the line
and why after the nightly assessment, borrow (live preview → confirm with the SMS code → money
on its way), see the schedule, repay the first installment, pay the rest off early, revoke, see
the line suspended. A screenshot of every step goes to test-artifacts/mobile/NN-step.png (stable
names: the README embeds some, copied to docs/screenshots/).

The county is a throwaway one onboarded (committed) for this module and dropped afterwards,
served by a live server thread on a free port: pytest-django's ``live_server`` needs
``transactional_db``, whose flush would truncate the public schema's tenant registry (and cannot,
for the county schemas' foreign keys into it). The test itself asks for ``db`` only so that the
test database is set up when it runs alone; its own connection then sits in that fixture's
transaction, which the server never sees, so the work the pages must show (the nightly
assessment) runs on a connection of its own and commits. Chromium resolves every
``*.localhost`` name to the loopback address by itself, so the county's domain reaches the
server with no hosts file.
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

from counties.mobile.selectors import yuan
from loans.models import CreditLine, Installment, Loan
from loans.nightly import credit_assessment_run
from loans.services import installments_fall_due
from platform.models import County, Domain, LendingPartner
from platform.services import county_onboard
from platform.sms import sms_outbox
from tests.conftest import COUNTY_ADMIN_PASSWORD, make_farmer, valid_id_number
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import activate_policy, activate_scorecard, add_wang

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "mobile"
# A code and domain no other test uses: this county is committed while the module runs.
COUNTY = {
    "code": "130123",
    "name": "正定县",
    "domain": "zhengding-mobile.localhost",
    "province": "河北省",
    "city": "石家庄市",
}
PARTNER_CODE = "browser-bank"
PHONE = "13511112222"
VIEWPORT = {"width": 360, "height": 640}
# What a finger can hit: every visible link, button, text field, confirmation toggle and
# checkbox row must be at least this tall and wide (CSS px).
TOUCH_TARGET = 48

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="/usr/bin/chromium is missing (scripts/ensure_chromium.sh installs it); in CI this test must run",
    ),
]

SMALL_TARGETS_JS = """
(minimum) => Array.from(document.querySelectorAll(
    'a, button, input:not([type=hidden]):not([type=checkbox]), summary, label.check'))
  .filter((element) => element.getClientRects().length && getComputedStyle(element).visibility !== 'hidden')
  .map((element) => {
    const box = element.getBoundingClientRect();
    return [element.outerHTML.slice(0, 80), Math.round(box.width), Math.round(box.height)];
  })
  .filter(([, width, height]) => width < minimum || height < minimum)
"""


@pytest.fixture(scope="module")
def served(django_db_setup, django_db_blocker):
    """A committed throwaway county with a partner, policy, scorecard and one farmer with
    government records, served over HTTP; dropped (schema, registry rows, partner) after."""
    with django_db_blocker.unblock():
        _drop_county()  # left over by a run that was killed (with --reuse-db)
        county = county_onboard(**COUNTY, admin_password=COUNTY_ADMIN_PASSWORD).county
        server = None
        try:
            with schema_context(county.schema_name):
                partner = credit_partner(PARTNER_CODE)
                activate_policy(partner)
                activate_scorecard()
                farmer = make_farmer(
                    name="孙八", id_number=valid_id_number(region=COUNTY["code"], seq=641), phone=PHONE
                )
                add_wang(farmer, timezone.localdate())
            server = LiveServerThread("127.0.0.1", StaticFilesHandler)
            server.daemon = True
            server.start()
            server.is_ready.wait()
            if server.error:
                raise server.error
            yield {"county": county, "farmer": farmer, "base": f"http://{COUNTY['domain']}:{server.port}"}
        finally:
            if server is not None:
                server.terminate()
            _drop_county()


def _drop_county() -> None:
    """Drop the throwaway county: its schema, registry rows and lending partner."""
    Domain.objects.filter(tenant__code=COUNTY["code"]).delete()
    for county in County.objects.filter(code=COUNTY["code"]):
        county.delete(force_drop=True)
    # Raw: the ORM's cascade would look for the partner's dependants in county tables the
    # public schema does not have (the only ones were in the dropped schema).
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {LendingPartner._meta.db_table} WHERE code = %s", [PARTNER_CODE])


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):  # screenshots of an older numbering must not linger
        old.unlink()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", device_scale_factor=1)
        yield context.new_page()
        context.close()
        browser.close()


def committed(work):
    """Run ``work`` on a database connection of its own, so what it writes is committed and the
    server thread sees it; returns its result or raises its error."""
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


def snap(page, number: int, step: str) -> None:
    """A screenshot of the whole page. The viewport is stretched to the page's height for it, so
    the fixed tab bar is drawn once at the foot of the page, not over its middle."""
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(height, VIEWPORT["height"])})
    page.screenshot(path=str(ARTIFACTS / f"{number:02d}-{step}.png"), full_page=True)
    page.set_viewport_size(VIEWPORT)


def fits_a_phone(page) -> None:
    """Nothing scrolls sideways at 360 px, and every touch target is big enough."""
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"], page.url
    assert page.evaluate(SMALL_TARGETS_JS, TOUCH_TARGET) == [], page.url


def test_login_consent_line_borrow_repay_revoke_in_chromium(served, db, page):
    # ``db`` before ``page``: Django refuses database work once Playwright's event loop runs.
    base, farmer = served["base"], served["farmer"]

    # 1. Log in: phone → code (shown on the page in demo mode, and in the SMS outbox file).
    page.goto(f"{base}/m/")
    assert page.url == f"{base}/m/login/"
    fits_a_phone(page)
    page.fill("input[name=phone]", PHONE)
    snap(page, 1, "login")
    page.click("text=获取验证码")
    page.wait_for_url(f"{base}/m/login/code/")
    demo_code = page.inner_text("#demo-code")
    assert re.fullmatch(r"\d{6}", demo_code)
    assert demo_code in sms_outbox(phone=PHONE)[-1]["text"]
    assert "验证码已发到 135****2222" in page.inner_text("main")
    fits_a_phone(page)
    page.fill("input[name=code]", demo_code)
    snap(page, 2, "code")
    page.click("button:has-text('登录')")
    page.wait_for_url(f"{base}/m/")

    # 2. No consent yet: the big consent button.
    assert page.get_attribute("#line", "data-state") == "no_consent"
    fits_a_phone(page)
    snap(page, 3, "home-no-consent")
    page.click("#line a.btn:has-text('授权')")
    page.wait_for_url(f"{base}/m/consent/")

    # 3. Consent in one tap: the agreed categories are ticked, the sensitive one separately.
    assert page.is_checked("input[value=land_contract]")
    assert not page.is_checked("input[value=poverty_monitoring]")
    assert "授权给browser-bank 银行" in page.inner_text("#grant")
    page.check("input[value=poverty_monitoring]")
    fits_a_phone(page)
    snap(page, 4, "consent")
    page.click("text=同意并授权")
    page.wait_for_url(f"{base}/m/")
    assert page.get_attribute("#line", "data-state") == "pending"
    assert "额度将在今晚计算" in page.inner_text("#line")
    snap(page, 5, "home-pending")

    # 4. The nightly assessment gives a line; the home page shows it and why.
    def assess():
        with schema_context(served["county"].schema_name):
            credit_assessment_run(business_date=timezone.localdate())
            return CreditLine.objects.select_related("assessment").get(farmer=farmer)

    line = committed(assess)
    page.reload()
    assert page.get_attribute("#line", "data-state") == "active"
    assert page.inner_text("#available") == f"{yuan(line.available)} 元" == "32,300 元"
    assert page.inner_text("#line-status") == "可用"
    assert page.inner_text("#line-grade") == "B"
    assert page.inner_text("#line-rate") == "6%"
    assert page.locator(".reasons li").all_inner_texts() == [reason["text_zh"] for reason in line.assessment.reasons]
    assert page.inner_text("#hint") == "提额办法：" + line.assessment.hint["text_zh"]
    fits_a_phone(page)
    snap(page, 6, "home-line")

    # 5. Borrow, screen 1: a prefilled amount, terms and methods, and a live schedule preview.
    page.click("#line a.btn:has-text('借款')")
    page.wait_for_url(f"{base}/m/borrow/")
    assert page.input_value("input[name=amount]") == "10000"
    assert page.is_checked("input[name=term_months][value='12']")
    assert page.is_checked("input[name=method][value=equal_installment]")
    assert not page.is_visible("button[data-nojs]")  # the preview is live: no preview button
    fits_a_phone(page)
    snap(page, 7, "borrow")
    page.fill("input[name=amount]", "12000")
    page.check("input[name=method][value=equal_principal]")
    # 12,000 at 6% over 12 months, equal principal: 1,000 + 12,000 × 6% / 12 = 1,060.00 first.
    page.wait_for_function("document.querySelector('#first-payment').textContent === '1,060.00 元'")
    assert page.inner_text("#apr") == "6%"
    assert page.locator("#plan li").count() == 12
    fits_a_phone(page)
    snap(page, 8, "borrow-preview")

    # Screen 2: the terms again and the SMS code (shown on the page in demo mode).
    page.click("button:has-text('下一步')")
    page.wait_for_url(f"{base}/m/borrow/confirm/")
    assert page.inner_text("#confirm-amount") == "12,000 元"
    code = page.inner_text("#demo-code")
    assert code in sms_outbox(phone=PHONE)[-1]["text"] and "借款确认码" in sms_outbox(phone=PHONE)[-1]["text"]
    page.fill("input[name=code]", code)
    fits_a_phone(page)
    snap(page, 9, "borrow-confirm")

    # Screen 3: money on its way.
    page.click("#confirm button:has-text('确认借款')")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/m/borrow/done/\d+/$"))
    assert page.inner_text("#done h1") == "钱正在路上"
    assert page.inner_text("#done-amount") == "12,000 元"
    assert page.inner_text("#first-payment") == "1,060.00 元"
    fits_a_phone(page)
    snap(page, 10, "borrow-done")

    # 6. The schedule: twelve periods, none due yet.
    page.click("text=看还款计划")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/m/loans/\d+/$"))
    loan_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    assert page.locator("#schedule li").count() == 12
    assert page.locator("#schedule li[data-status=scheduled]").count() == 12
    assert "现在没有要还的钱" in page.inner_text("#repay")
    fits_a_phone(page)
    snap(page, 11, "loan-schedule")

    # 7. Repay the first installment. Its date is a month away and the server's business date
    # is today (the browser cannot move it), so the test makes it fall due the way the nightly
    # close of that day would: loans.services.installments_fall_due on its due date, on a
    # connection of its own so the server sees it. "Repay now" then pays exactly that period.
    def first_falls_due():
        with schema_context(served["county"].schema_name):
            loan = Loan.objects.get(pk=loan_id)
            first = loan.installments.order_by("due_date").first()
            installments_fall_due(loan=loan, on=first.due_date)

    committed(first_falls_due)
    page.reload()
    assert page.inner_text("#due-now") == "1,060.00 元"
    assert page.get_attribute("#schedule li >> nth=0", "data-status") == "due"
    page.click("summary:has-text('现在还款')")
    fits_a_phone(page)
    page.click("button:has-text('确认还款')")
    page.wait_for_url(f"{base}/m/loans/{loan_id}/")
    assert "已还款 1,060.00 元" in page.inner_text(".flash")
    first_row = page.locator("#schedule li >> nth=0")
    assert first_row.get_attribute("data-status") == "paid"
    assert "✓" in first_row.inner_text() and "已还清" in first_row.inner_text()
    fits_a_phone(page)
    snap(page, 12, "loan-repaid")

    # 8. Pay the rest off early: the quote for today (no days of interest yet: nothing passed).
    assert page.inner_text("#payoff-total") == "11,000.00 元"
    page.click("summary:has-text('提前还清')")
    page.click("button:has-text('确认还清')")
    page.wait_for_url(f"{base}/m/loans/{loan_id}/")
    assert "已全部还清，共还 11,000.00 元" in page.inner_text(".flash")
    assert page.get_attribute("#loan", "data-state") == "closed"
    fits_a_phone(page)
    snap(page, 13, "loan-paid-off")

    def loan_state():
        with schema_context(served["county"].schema_name):
            loan = Loan.objects.get(pk=loan_id)
            return (
                loan.status,
                loan.outstanding_principal,
                loan.installments.filter(status=Installment.Status.PAID).count(),
            )

    assert committed(loan_state) == (Loan.Status.CLOSED, 0, 2)  # period 1 and the payoff period

    # 9. Revoke in two taps: open the confirmation, confirm.
    page.click("nav.tabs >> text=授权")
    page.wait_for_url(f"{base}/m/consent/")
    assert page.inner_text("#consent-status") == "有效"
    page.click("summary:has-text('撤回授权')")
    fits_a_phone(page)
    snap(page, 14, "revoke-confirm")
    page.click("text=确认撤回")
    page.wait_for_url(f"{base}/m/consent/")
    assert "已撤回授权" in page.inner_text(".flash")

    # 10. The line is suspended at once, and the page says why.
    page.click("nav.tabs >> text=首页")
    page.wait_for_url(f"{base}/m/")
    assert page.get_attribute("#line", "data-state") == "suspended"
    assert page.inner_text("#line-status") == "已冻结"
    assert page.inner_text("#available") == "0 元"
    assert "您撤回了授权，额度已冻结" in page.inner_text("#line-explanation")
    fits_a_phone(page)
    snap(page, 15, "home-suspended")

    # 11. The same page in English, through the language button, and back.
    with page.expect_navigation():
        page.click("header button[name=language]")
    assert page.inner_text("#line-status") == "Frozen"
    assert page.inner_text("#available") == "0 yuan"
    assert "You revoked your consent" in page.inner_text("#line-explanation")
    fits_a_phone(page)
    snap(page, 16, "home-suspended-en")
    # The paid-off loan in English: its state, schedule marks and words fit the phone too.
    page.click("nav.tabs >> text=My loans")
    page.wait_for_url(f"{base}/m/loans/")
    page.click(f"#loan-{loan_id} a.btn")
    page.wait_for_url(f"{base}/m/loans/{loan_id}/")
    assert "Paid off on" in page.inner_text("#loan-state")
    marks = page.locator("#schedule li .mark-label").all_inner_texts()
    assert len(marks) == 2 and all("✓" in mark and "Paid" in mark for mark in marks)
    fits_a_phone(page)
    snap(page, 17, "loan-en")
    with page.expect_navigation():
        page.click("header button[name=language]")
    assert page.inner_text("#loan-state").startswith("✓已于")
    page.click("nav.tabs >> text=首页")
    page.wait_for_url(f"{base}/m/")
    assert page.inner_text("#line-status") == "已冻结"

    # 12. My data lists the accesses, the nightly read included.
    page.click("nav.tabs >> text=我的数据")
    page.wait_for_url(f"{base}/m/data/")
    assert "browser-bank 银行（夜间额度计算）" in page.inner_text("#accesses")
    fits_a_phone(page)
    snap(page, 18, "my-data")
