"""The upload pages and the policy sandbox in a real Chromium, on the same throwaway county as
tests/counties/portal/test_browser.py (its fixtures: a committed county with an active policy
and one finished night, served over HTTP; a real Celery worker):

* a data officer uploads a file with a bad row — the batch is rejected, its error is listed and
  nothing is imported — then a good file, whose progress bar reaches 100%;
* a risk officer drafts a policy, changes a multiplier in the what-if sandbox, sees the figures
  change, and submits it.

Screenshots go to test-artifacts/portal/ (the README's docs/screenshots/portal-*.png were
copied from there by hand; tests never write tracked files).
"""

from __future__ import annotations

import re

from django_tenants.utils import schema_context

from tests.counties.portal import test_browser as browser
from tests.counties.portal.conftest import PASSWORD, code_for, make_official
from tests.counties.portal.test_browser import COUNTY, committed, snap

# The throwaway county, the Celery worker and the Chromium page of test_browser.py (its
# fixtures, registered in this module too; the county is onboarded again for this module).
served, worker, page = browser.served, browser.worker, browser.page
pytestmark = browser.pytestmark

LAND_HEADER = "身份证号,姓名,承包合同编号,地块数,承包面积（亩）,承包期限至\n"


def _official(served, role: str, username: str) -> int:
    """A committed official of ``role`` with a TOTP device; returns the device's id."""

    def create() -> int:
        with schema_context(served["county"].schema_name):
            _user, _official, device = make_official(role, username=username)
            return device.pk

    return committed(create)


def _login(page, served, username: str, device_id: int) -> None:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    def code() -> str:
        with schema_context(served["county"].schema_name):
            return code_for(TOTPDevice.objects.get(pk=device_id))

    base = served["base"]
    page.goto(f"{base}/portal/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button:has-text('下一步')")
    page.wait_for_url(re.compile(r".*/portal/login/code/.*"))
    page.fill("input[name=token]", committed(code))
    page.click("main button:has-text('登录')")
    page.wait_for_url(f"{base}/portal/")


def _land_records(served) -> int:
    from data_sharing.models import GovernmentRecord

    def count() -> int:
        with schema_context(served["county"].schema_name):
            return GovernmentRecord.objects.filter(category__code="land_contract").count()

    return committed(count)


def _upload(page, served, content: str) -> None:
    page.goto(f"{served['base']}/portal/data/upload/?category=land_contract")
    page.select_option("select[name=category]", "land_contract")
    page.fill("input[name=as_of_date]", "2026-06-30")
    page.set_input_files("input[name=file]", files=[{"name": "土地承包.csv", "mimeType": "text/csv", "buffer": content.encode()}])
    page.click("[data-upload-form] button[type=submit]")
    page.wait_for_url(re.compile(r".*/portal/data/batches/\d+/$"), timeout=30000)


def test_an_upload_with_a_bad_row_then_a_good_file(served, worker, db, page):
    from tests.conftest import valid_id_number

    device = _official(served, "data_officer", "uploader")
    _login(page, served, "uploader", device)
    id_number = valid_id_number(region=COUNTY["code"], seq=700)  # 农户00 of the served county
    before = _land_records(served)

    page.goto(f"{served['base']}/portal/data/upload/?category=land_contract")
    snap(page, 11, "upload-form")
    _upload(page, served, LAND_HEADER + f"{id_number},农户00,HT-1,3,12.5,\n{id_number},农户00,HT-2,0,2.5,\n")
    page.wait_for_selector("table[data-errors]", timeout=60000)  # the page reloads once the worker is done
    assert page.locator("[data-progress-status]").inner_text() == "已拒绝"
    assert "整批未导入" in page.inner_text("main")
    assert page.locator("table[data-errors] tbody tr").count() == 1
    assert "超出范围（1 到 500）：0" in page.inner_text("table[data-errors]")
    assert page.locator("[data-error-report]").get_attribute("href").endswith("/errors.csv")
    snap(page, 12, "upload-rejected")
    assert _land_records(served) == before  # nothing imported

    _upload(page, served, LAND_HEADER + f"{id_number},农户00,HT-1,3,12.5,\n{id_number},农户00,HT-2,2,2.5,\n")
    page.wait_for_function(
        "() => document.querySelector('[data-progress-status]').textContent.trim() === '已导入'", timeout=60000
    )
    page.wait_for_selector("[data-progress-bar][value='100']", timeout=10000)
    assert page.locator("[data-progress-percent]").inner_text() == "100%"
    assert "已导入 2 行。" in page.inner_text("main")
    snap(page, 13, "upload-imported")
    assert _land_records(served) == before + 2

    # The category's history lists both batches, newest first.
    page.goto(f"{served['base']}/portal/data/upload/?category=land_contract")
    statuses = page.locator("[data-recent-imports] tbody tr td:nth-child(5)").all_inner_texts()
    assert statuses[:2] == ["已导入", "已拒绝"]


def test_the_what_if_sandbox_then_submit(served, db, page):
    device = _official(served, "risk_officer", "whatif-risk")
    _login(page, served, "whatif-risk", device)
    page.wait_for_selector("[data-dashboard-url][data-loaded=true]", timeout=15000)
    snap(page, 20, "dashboard")

    page.click("nav.portal-nav >> text=授信政策")
    page.wait_for_url(f"{served['base']}/portal/policy/")
    snap(page, 21, "policy")
    page.click("[data-new-draft] button")
    page.wait_for_url(re.compile(r".*/portal/policy/\d+/$"))
    draft_total = page.locator("tr[data-sim=total] td[data-side=draft]")
    active_total = page.locator("tr[data-sim=total] td[data-side=active]")
    assert draft_total.inner_text() == active_total.inner_text()  # a new draft copies the policy in force
    before = draft_total.inner_text()
    snap(page, 22, "whatif-draft")

    # Grade C (the third row) from 0.45 to 0.3: every farmer of the served county is in C.
    page.fill("input[name=grades-2-multiplier]", "0.3")
    page.click("[data-simulate]")
    page.wait_for_url(re.compile(r".*/portal/policy/\d+/#whatif$"))
    assert "已保存" in page.inner_text(".messages")
    after = draft_total.inner_text()
    assert after != before
    assert _number(after) == _number(before) * 2 / 3  # 20,000 × 0.45 → 20,000 × 0.3 per farmer
    assert page.locator("[data-move=down]").inner_text() != "0"
    page.locator("#whatif").scroll_into_view_if_needed()
    snap(page, 23, "whatif-changed")

    page.click("[data-submit]")
    page.wait_for_selector("[data-policy-status=pending]")
    assert "等待另一名工作人员审批" in page.inner_text(".messages")
    assert page.locator("[data-approval]").count() == 1
    snap(page, 24, "whatif-submitted")


def _number(text: str) -> float:
    return float(text.replace(",", "").strip())
