"""The credit policy pages: the model card and PSI history, drafting and editing a version in the
sandbox, submission, and the second-official rule through the UI (the submitter's approval is
refused and shown; another official's activates it)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from counties.models import Official
from loans.models import AssessmentRun, CreditPolicy, PolicyEvent
from loans.scorecards import scorecard_active
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import GRADES, activate_policy

R = Official.Role
PARAMS = ("min_line", "max_line", "rounding_unit", "base_income", "income_per_mu", "min_age", "max_age", "validity_months")


@pytest.fixture
def active(portal):
    partner = credit_partner("policy-bank")
    return activate_policy(partner)


def draft_post(policy: CreditPolicy, *, action: str = "simulate", grades: list[dict] | None = None, **overrides) -> dict:
    """The sandbox form as a browser posts it: the parameters, the grade rows, an empty extra row."""
    grades = grades if grades is not None else policy.grades
    data = {name: str(getattr(policy, name)) for name in PARAMS}
    data.update({name: str(value) for name, value in overrides.items()})
    data.update({
        "grades-TOTAL_FORMS": str(len(grades) + 1), "grades-INITIAL_FORMS": str(len(grades)),
        "grades-MIN_NUM_FORMS": "0", "grades-MAX_NUM_FORMS": "1000", "action": action,
    })
    for index, row in enumerate(grades):
        for key, value in row.items():
            data[f"grades-{index}-{key}"] = value
    return data


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


def test_the_page_shows_the_active_policy_and_the_model_card(portal, active):
    scorecard = scorecard_active()
    for days, psi in ((3, "0.0312"), (2, "0.1420"), (1, "0.2710")):
        AssessmentRun.objects.create(
            business_date=dt.date(2026, 11, 30) - dt.timedelta(days=days), status="succeeded", policy=active,
            scorecard=scorecard, chunk_size=50_000, counts={"scored": 1000 + days}, psi=Decimal(psi),
            psi_warning=Decimal(psi) >= Decimal("0.25"), started_at=timezone.now(),
        )
    AssessmentRun.objects.create(  # failed, without a PSI: not in the history
        business_date=dt.date(2026, 11, 30), status="failed", policy=active, scorecard=scorecard, chunk_size=50_000,
        started_at=timezone.now(),
    )
    portal.login(R.AUDITOR)
    response = portal.get("/portal/policy/")
    html = response.content.decode()

    card = response.context["card"]
    metrics = scorecard.metrics
    assert (card["gini"], card["ks"]) == (metrics["gini"], metrics["ks"])
    assert [(f.name, f.iv) for f in card["features"]] == [
        (spec["name"], metrics["iv"][spec["name"]]) for spec in scorecard.spec["features"]
    ]
    assert {f.name: f.strength_zh for f in card["features"]}["operated_area_mu"] == "中"  # IV 0.236
    assert [(row["business_date"].day, str(row["psi"]), row["status"]) for row in response.context["psi_history"]] == [
        (27, "0.0312", "stable"), (28, "0.1420", "watch"), (29, "0.2710", "shifted"),
    ]
    assert response.context["psi_chart"]["psi"] == ["0.0312", "0.1420", "0.2710"]
    assert f'<dd data-metric="gini">{metrics["gini"]}</dd>' in html
    assert "已偏移" in html and "/static/portal/policy.js" in html
    assert "data-new-draft" not in html  # an auditor drafts nothing


def test_a_draft_is_edited_submitted_and_needs_a_second_official(portal, active):
    submitter = portal.login(R.RISK_OFFICER, username="risk-a")
    created = portal.post("/portal/policy/new", {"partner": active.partner_id})
    draft = CreditPolicy.objects.get(status=CreditPolicy.Status.DRAFT)
    assert created["Location"] == f"/portal/policy/{draft.version}/"
    assert (draft.grades, draft.created_by) == (active.grades, "risk-a")

    # Save and simulate with C's multiplier changed; then save and submit.
    grades = [dict(row) for row in GRADES]
    grades[2]["multiplier"] = "0.5"
    saved = portal.post(f"/portal/policy/{draft.version}/", draft_post(draft, grades=grades, base_income="21000.00"))
    draft.refresh_from_db()
    assert saved.status_code == 302 and saved["Location"].endswith("#whatif")
    assert (draft.grades[2]["multiplier"], draft.base_income) == ("0.5", Decimal("21000.00"))
    update = PolicyEvent.objects.filter(policy=draft, event="updated").get()
    assert set(update.changes) == {"grades", "base_income"}

    submitted = portal.post(f"/portal/policy/{draft.version}/", draft_post(draft, action="submit"))
    draft.refresh_from_db()
    assert submitted.status_code == 302
    assert (draft.status, draft.submitted_by) == (CreditPolicy.Status.PENDING, submitter.user.username)

    # The submitter cannot approve: refused, and the page says why.
    refused = portal.client.post(f"/portal/policy/{draft.version}/approve", HTTP_HOST="lankao.localhost", follow=True)
    draft.refresh_from_db()
    assert draft.status == CreditPolicy.Status.PENDING
    assert any("提交人不能审批自己提交的政策" in message for message in _messages(refused))
    assert "提交人不能审批自己提交的政策" in refused.content.decode()
    assert not PolicyEvent.objects.filter(policy=draft, event="approved").exists()

    # A second official (the county administrator) approves: active now, the previous retired.
    portal.login(R.COUNTY_ADMIN, username="admin-b")
    approved = portal.client.post(f"/portal/policy/{draft.version}/approve", HTTP_HOST="lankao.localhost", follow=True)
    draft.refresh_from_db()
    active.refresh_from_db()
    assert (draft.status, draft.approved_by) == (CreditPolicy.Status.ACTIVE, "admin-b")
    assert active.status == CreditPolicy.Status.RETIRED
    assert any("已生效" in message for message in _messages(approved))


def test_a_pending_version_can_be_sent_back_with_a_reason(portal, active):
    portal.login(R.RISK_OFFICER, username="risk-a")
    portal.post("/portal/policy/new", {"partner": active.partner_id})
    draft = CreditPolicy.objects.get(status=CreditPolicy.Status.DRAFT)
    portal.post(f"/portal/policy/{draft.version}/submit")
    portal.login(R.COUNTY_ADMIN, username="admin-b")
    portal.post(f"/portal/policy/{draft.version}/reject", {"reason": "倍数过高"})
    draft.refresh_from_db()
    assert (draft.status, draft.submitted_by) == (CreditPolicy.Status.DRAFT, "")
    assert PolicyEvent.objects.get(policy=draft, event="rejected").changes["reason"] == "倍数过高"


def test_an_invalid_edit_shows_every_problem_and_saves_nothing(portal, active):
    portal.login(R.COUNTY_ADMIN)
    portal.post("/portal/policy/new", {"partner": active.partner_id})
    draft = CreditPolicy.objects.get(status=CreditPolicy.Status.DRAFT)
    grades = [dict(row) for row in GRADES]
    grades[1]["multiplier"] = "1.5"  # riskier B above A's 1.2
    response = portal.post(f"/portal/policy/{draft.version}/", draft_post(draft, grades=grades, max_line="300000.00"))
    html = response.content.decode()

    assert response.status_code == 200
    assert "额度范围须满足" in html and "风险更高的等级倍数和上限不能更大" in html
    draft.refresh_from_db()
    assert draft.max_line == active.max_line and draft.grades == active.grades
    assert not PolicyEvent.objects.filter(policy=draft, event="updated").exists()


def test_the_auditor_reads_but_writes_nothing(portal, active):
    portal.login(R.RISK_OFFICER, username="risk-a")
    portal.post("/portal/policy/new", {"partner": active.partner_id})
    draft = CreditPolicy.objects.get(status=CreditPolicy.Status.DRAFT)
    portal.post(f"/portal/policy/{draft.version}/submit")
    events = PolicyEvent.objects.count()

    portal.login(R.AUDITOR)
    page = portal.get(f"/portal/policy/{draft.version}/")
    assert page.status_code == 200
    assert "data-policy-form" not in page.content.decode() and "data-approve" not in page.content.decode()
    posts = {
        "/portal/policy/new": {"partner": active.partner_id},
        f"/portal/policy/{draft.version}/": draft_post(draft),
        f"/portal/policy/{draft.version}/submit": {},
        f"/portal/policy/{draft.version}/approve": {},
        f"/portal/policy/{draft.version}/reject": {"reason": "x"},
    }
    assert {path: portal.post(path, data).status_code for path, data in posts.items()} == dict.fromkeys(posts, 403)
    draft.refresh_from_db()
    assert draft.status == CreditPolicy.Status.PENDING and PolicyEvent.objects.count() == events


@pytest.mark.parametrize("role", [R.DATA_OFFICER, R.TOWNSHIP_OFFICER])
def test_other_roles_do_not_see_the_policy(portal, active, role):
    portal.login(role)
    assert portal.get("/portal/policy/").status_code == 403
    assert portal.get(f"/portal/policy/{active.version}/").status_code == 403
    assert portal.post("/portal/policy/new", {"partner": active.partner_id}).status_code == 403
    assert CreditPolicy.objects.count() == 1


def test_the_pages_speak_english_too(portal, active):
    portal.login(R.RISK_OFFICER)
    portal.post("/portal/policy/new", {"partner": active.partner_id})
    draft = CreditPolicy.objects.get(status=CreditPolicy.Status.DRAFT)
    portal.client.cookies["django_language"] = "en"
    policy_page = portal.get("/portal/policy/").content.decode()
    draft_page = portal.get(f"/portal/policy/{draft.version}/").content.decode()
    reports_page = portal.get("/portal/reports/").content.decode()
    assert "Scorecard and model card" in policy_page and "Population stability index (PSI)" in policy_page
    assert "Save and simulate" in draft_page and "Simulation: the policy in force and this version" in draft_page
    assert "Download CSV" in reports_page and "Monthly loan report" in reports_page
    assert "County programmes" in reports_page and "Reports" in reports_page  # the navigation
