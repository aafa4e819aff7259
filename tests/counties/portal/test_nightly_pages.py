"""The nightly-run pages: the list with status, steps, duration, counts, failures and PSI
warning; the live progress endpoint; the rerun button queues exactly one Celery message, sent
from the county's schema, and refuses a second while the first is pending."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from counties.models import NightlyRun, Official
from counties.selectors import CREDIT_STEP
from counties.tasks import nightly_county
from loans.models import AssessmentRun
from loans.scorecards import scorecard_ensure_default
from tests.counties.test_nightly import _drain
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import activate_policy

DAY = dt.date(2026, 11, 26)


def _assessment(day: dt.date, **fields) -> AssessmentRun:
    policy = activate_policy(credit_partner("nightly-page-bank"))
    return AssessmentRun.objects.create(
        business_date=day, policy=policy, scorecard=scorecard_ensure_default(), chunk_size=50_000,
        started_at=timezone.now(), **fields,
    )


def test_rerun_queues_exactly_one_task_in_the_countys_schema(portal, lankao, celery_queue, django_capture_on_commit_callbacks):
    NightlyRun.objects.create(business_date=DAY, status=NightlyRun.Status.FAILED, attempts=1, error="boom")
    portal.login(Official.Role.RISK_OFFICER)
    _drain(celery_queue)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = portal.post(f"/portal/nightly/{DAY}/rerun")
    assert (response.status_code, response["Location"]) == (302, f"/portal/nightly/{DAY}/")
    assert len(callbacks) == 1
    messages = _drain(celery_queue)
    assert len(messages) == 1
    message = messages[0]
    assert message.headers["task"] == nightly_county.name == "counties.tasks.nightly_county"
    assert message.headers["_schema_name"] == lankao.schema_name
    args, kwargs, _embed = message.payload
    assert (args, kwargs) == ([], {"business_date": DAY.isoformat()})
    run = NightlyRun.objects.get(business_date=DAY)
    assert run.status == NightlyRun.Status.QUEUED
    progress = portal.get(f"/portal/nightly/{DAY}/progress").json()
    assert (progress["status"], progress["finished"], progress["percent"], progress["steps_done"]) == ("queued", False, 0, 0)

    # A second click while it is queued queues nothing more, and says why.
    with django_capture_on_commit_callbacks(execute=True) as again:
        response = portal.post(f"/portal/nightly/{DAY}/rerun")
    assert response.status_code == 302 and again == []
    assert _drain(celery_queue) == []
    page = portal.get(f"/portal/nightly/{DAY}/").content.decode()
    assert "已在排队或运行中" in page


def test_a_run_stuck_for_hours_can_be_queued_again(portal, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(nightly_county, "apply_async", lambda *args, **kwargs: sent.append(kwargs))
    NightlyRun.objects.create(
        business_date=DAY, status=NightlyRun.Status.RUNNING, started_at=timezone.now() - dt.timedelta(hours=3)
    )
    portal.login(Official.Role.COUNTY_ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        portal.post(f"/portal/nightly/{DAY}/rerun")
    assert sent == [{"kwargs": {"business_date": DAY.isoformat()}}]
    assert portal.post("/portal/nightly/2001-01-01/rerun").status_code == 404


def test_progress_counts_steps_and_the_credit_steps_chunks(portal):
    planned = list(settings.NIGHTLY_STEPS)
    credit_index = planned.index(CREDIT_STEP)
    done = [{"name": name, "status": "succeeded", "counts": {}, "seconds": 0.1} for name in planned[:credit_index]]
    NightlyRun.objects.create(
        business_date=DAY, status=NightlyRun.Status.RUNNING, attempts=1, started_at=timezone.now(), steps=done
    )
    _assessment(DAY, chunks_total=4, chunks_done=3)
    portal.login(Official.Role.DATA_OFFICER)
    progress = portal.get(f"/portal/nightly/{DAY}/progress").json()
    expected_percent = int((Decimal(credit_index) + Decimal(3) / 4) * 100 / len(planned))
    assert progress == {
        "business_date": DAY.isoformat(), "status": "running", "status_display": "运行中", "finished": False,
        "attempts": 1, "steps_total": len(planned), "steps_done": credit_index, "current_step": CREDIT_STEP,
        "chunks_done": 3, "chunks_total": 4, "percent": expected_percent, "psi": None, "psi_warning": False,
    }
    page = portal.get(f"/portal/nightly/{DAY}/").content.decode()
    assert f'value="{expected_percent}"' in page
    assert 'data-progress-url="/portal/nightly/2026-11-26/progress"' in page
    assert "重新运行" not in page  # a data officer sees the run but has no rerun button


def test_the_list_shows_status_duration_counts_failures_and_the_psi_warning(portal):
    started = timezone.now() - dt.timedelta(minutes=5)
    NightlyRun.objects.create(
        business_date=DAY, status=NightlyRun.Status.SUCCEEDED, attempts=2, started_at=started,
        finished_at=started + dt.timedelta(seconds=42.5),
        steps=[{"name": name, "status": "succeeded", "counts": {"n": 1}, "seconds": 1.0} for name in settings.NIGHTLY_STEPS],
    )
    _assessment(DAY, status=AssessmentRun.Status.SUCCEEDED, chunks_total=2, chunks_done=2,
                counts={"scored": 1234, "eligible": 1000}, psi=Decimal("0.3100"), psi_warning=True)
    failed_day = DAY - dt.timedelta(days=1)
    NightlyRun.objects.create(
        business_date=failed_day, status=NightlyRun.Status.FAILED, attempts=1, started_at=started,
        finished_at=started + dt.timedelta(seconds=3),
        steps=[{"name": "counties.services.township_stats_refresh", "status": "succeeded", "counts": {}, "seconds": 0.1},
               {"name": "loans.nightly.credit_assessment_run", "status": "failed", "seconds": 2.0}],
        error="Traceback: chunk 1 broke",
    )
    portal.login(Official.Role.AUDITOR)
    page = portal.get("/portal/nightly/")
    rows = {item.run.business_date: item for item in page.context["page"]}
    assert rows[DAY].seconds == 42.5
    assert rows[DAY].assessment.psi_warning
    assert rows[failed_day].failed_steps == ["loans.nightly.credit_assessment_run"]
    html = page.content.decode()
    assert "分布偏移" in html and "1234" in html and "42.5" in html
    detail = portal.get(f"/portal/nightly/{failed_day}/").content.decode()
    assert "Traceback: chunk 1 broke" in detail and "重新运行" not in detail  # an auditor: no rerun button
    assert "人群分布已偏移" in portal.get(f"/portal/nightly/{DAY}/").content.decode()


def test_a_rerun_on_the_worker_path_converges(portal, book, monkeypatch, django_capture_on_commit_callbacks):
    """The rerun's task runs the real nightly steps for the date; the run ends succeeded with
    one more attempt, the progress at 100 % and the dashboard history holding that date."""
    sent = []
    monkeypatch.setattr(nightly_county, "apply_async", lambda *args, **kwargs: sent.append(kwargs["kwargs"]))
    NightlyRun.objects.create(business_date=DAY, status=NightlyRun.Status.FAILED, attempts=1)
    portal.login(Official.Role.COUNTY_ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        portal.post(f"/portal/nightly/{DAY}/rerun")
    assert sent == [{"business_date": DAY.isoformat()}]
    result = nightly_county.run(**sent[0])  # what the worker does with the message
    assert result["status"] == NightlyRun.Status.SUCCEEDED
    progress = portal.get(f"/portal/nightly/{DAY}/progress").json()
    assert (progress["status"], progress["finished"], progress["percent"], progress["attempts"]) == ("succeeded", True, 100, 2)
    history = portal.get("/portal/dashboard.json").json()["history"]
    assert DAY.isoformat() in [point["business_date"] for point in history]
