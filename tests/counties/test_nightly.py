"""The nightly batch: ``run_nightly`` for one county and date, its idempotence and failure
record, beat's 02:00 dispatch that fans out to every live county, and the stagger."""

from __future__ import annotations

import datetime as dt
import time
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings
from django_tenants.utils import schema_context

from counties.models import Household, NightlyRun, Township, TownshipDailyStat, Village
from counties.tasks import dispatch_nightly, nightly_county, stagger_seconds
from platform.celery import app
from platform.models import County
from tests.conftest import TEST_COUNTIES, in_county, make_farmer, valid_id_number

LANKAO = TEST_COUNTIES["lankao"]["code"]
JINZHAI = TEST_COUNTIES["jinzhai"]["code"]
SHANGHAI = ZoneInfo("Asia/Shanghai")
REFRESH_STEP = "counties.services.township_stats_refresh"


def _roster() -> dict[str, tuple[int, int]]:
    """Three townships with a known shape; returns {township code: (households, farmers)}.

    A: village A1 with a household of two farmers and one of one; village A2 with a household
       that has no farmer on the roster yet → 3 households, 3 farmers.
    B: one village, one household, one farmer → 1, 1.
    C: no villages at all → 0, 0.
    """
    seq = iter(range(500, 600))
    a = Township.objects.create(code="410225101", name="甲镇")
    b = Township.objects.create(code="410225102", name="乙镇")
    Township.objects.create(code="410225103", name="丙镇")
    a1 = Village.objects.create(township=a, code="410225101001", name="甲一村")
    a2 = Village.objects.create(township=a, code="410225101002", name="甲二村")
    b1 = Village.objects.create(township=b, code="410225102001", name="乙一村")

    first = make_farmer(name="甲户主", id_number=valid_id_number(seq=next(seq)), village=a1)
    spouse = make_farmer(name="甲配偶", id_number=valid_id_number(seq=next(seq)), village=a1)
    # The spouse belongs to the first household (make_farmer made a household of its own).
    spare = spouse.household
    spouse.household = first.household
    spouse.is_household_head = False
    spouse.save(update_fields=["household", "is_household_head"])
    spare.delete()
    make_farmer(name="甲单身", id_number=valid_id_number(seq=next(seq)), village=a1)
    Household.objects.create(village=a2, code="H-A2-EMPTY", members=3)
    make_farmer(name="乙户主", id_number=valid_id_number(seq=next(seq)), village=b1)
    return {"410225101": (3, 3), "410225102": (1, 1), "410225103": (0, 0)}


def _stats(business_date: dt.date) -> dict[str, tuple[int, int]]:
    return {
        code: (households, farmers)
        for code, households, farmers in TownshipDailyStat.objects.filter(business_date=business_date).values_list(
            "township__code", "households", "farmers"
        )
    }


def _run(code: str, date: str) -> str:
    out = StringIO()
    call_command("run_nightly", county=code, date=date, stdout=out)
    return out.getvalue()


def test_run_nightly_computes_township_stats_and_records_the_run(lankao):
    with in_county(lankao):
        before = Township.objects.count()
        expected = _roster()

    output = _run(LANKAO, "2024-05-01")

    assert output.splitlines()[0] == "兰考县 410225 2024-05-01: succeeded"
    with in_county(lankao):
        run = NightlyRun.objects.get(business_date=dt.date(2024, 5, 1))
        assert run.status == NightlyRun.Status.SUCCEEDED
        assert run.attempts == 1
        assert run.error == ""
        assert run.started_at is not None
        assert run.finished_at is not None
        assert run.started_at <= run.finished_at
        assert [step["name"] for step in run.steps] == settings.NIGHTLY_STEPS
        step = run.steps[0]
        assert step["status"] == "succeeded"
        assert step["counts"] == {"townships": before + 3}
        assert step["seconds"] >= 0

        stats = _stats(dt.date(2024, 5, 1))
        assert len(stats) == before + 3
        for code, counts in expected.items():
            assert stats[code] == counts, code
        assert TownshipDailyStat.objects.exclude(business_date=dt.date(2024, 5, 1)).count() == 0
    # Only lankao ran: jinzhai has neither a run row nor statistics for that date.
    with schema_context(f"county_{JINZHAI}"):
        assert NightlyRun.objects.count() == 0
        assert TownshipDailyStat.objects.count() == 0


def test_rerunning_a_date_converges_without_duplicates(lankao):
    with in_county(lankao):
        expected = _roster()

    _run(LANKAO, "2024-05-02")
    with in_county(lankao):
        first_rows = sorted(
            TownshipDailyStat.objects.filter(business_date="2024-05-02").values_list(
                "id", "township__code", "households", "farmers"
            )
        )
        first_run = NightlyRun.objects.get(business_date="2024-05-02")

    _run(LANKAO, "2024-05-02")
    with in_county(lankao):
        second_rows = sorted(
            TownshipDailyStat.objects.filter(business_date="2024-05-02").values_list(
                "id", "township__code", "households", "farmers"
            )
        )
        assert second_rows == first_rows  # the same rows (same ids), not new ones
        assert TownshipDailyStat.objects.count() == len(first_rows)
        assert NightlyRun.objects.filter(business_date="2024-05-02").count() == 1
        run = NightlyRun.objects.get(business_date="2024-05-02")
        assert run.pk == first_run.pk
        assert run.attempts == 2
        assert run.status == NightlyRun.Status.SUCCEEDED
        assert run.finished_at >= first_run.finished_at
        for code, counts in expected.items():
            assert _stats(dt.date(2024, 5, 2))[code] == counts

        # A farmer registered after the first run: the rerun overwrites the same row.
        make_farmer(name="乙新人", id_number=valid_id_number(seq=650), village=Village.objects.get(code="410225102001"))
    _run(LANKAO, "2024-05-02")
    with in_county(lankao):
        third = _stats(dt.date(2024, 5, 2))
        assert third["410225102"] == (2, 2)
        assert third["410225101"] == (3, 3)
        assert TownshipDailyStat.objects.count() == len(first_rows)
        assert NightlyRun.objects.get(business_date="2024-05-02").attempts == 3


def test_unknown_county_is_refused_with_a_bilingual_message(db):
    with pytest.raises(CommandError) as raised:
        call_command("run_nightly", county="999999", date="2024-05-01")
    assert str(raised.value) == "没有代码为 999999 的县 / no county with code 999999"


@pytest.mark.parametrize("bad", ["2024-13-01", "2024/05/01", "yesterday"])
def test_bad_date_is_refused_with_a_bilingual_message(lankao, bad):
    with pytest.raises(CommandError) as raised:
        call_command("run_nightly", county=LANKAO, date=bad)
    assert str(raised.value) == f"日期格式应为 YYYY-MM-DD / date must be YYYY-MM-DD: {bad}"
    with in_county(lankao):
        assert NightlyRun.objects.count() == 0


class NightlyStepBroke(RuntimeError):
    pass


def broken_step(*, business_date: dt.date) -> dict[str, int]:
    raise NightlyStepBroke(f"step broke for {business_date}")


def test_a_failing_step_marks_the_run_failed_and_reraises(lankao):
    with in_county(lankao):
        expected = _roster()
    steps = [REFRESH_STEP, "tests.counties.test_nightly.broken_step"]
    with override_settings(NIGHTLY_STEPS=steps), pytest.raises(NightlyStepBroke, match="step broke for 2024-05-03"):
        call_command("run_nightly", county=LANKAO, date="2024-05-03", stdout=StringIO())

    with in_county(lankao):
        run = NightlyRun.objects.get(business_date="2024-05-03")
        assert run.status == NightlyRun.Status.FAILED
        assert run.attempts == 1
        assert run.finished_at is not None
        assert "NightlyStepBroke: step broke for 2024-05-03" in run.error
        assert "Traceback" in run.error
        assert [(step["name"], step["status"]) for step in run.steps] == [(steps[0], "succeeded"), (steps[1], "failed")]
        assert "counts" not in run.steps[1]
        # The earlier step's work is kept.
        for code, counts in expected.items():
            assert _stats(dt.date(2024, 5, 3))[code] == counts

    # Fixed and rerun: the same row succeeds, the error is cleared.
    _run(LANKAO, "2024-05-03")
    with in_county(lankao):
        run = NightlyRun.objects.get(business_date="2024-05-03")
        assert (run.status, run.attempts, run.error) == (NightlyRun.Status.SUCCEEDED, 2, "")
        assert [step["name"] for step in run.steps] == settings.NIGHTLY_STEPS


# --- stagger and beat ------------------------------------------------------------------------


def test_stagger_is_deterministic_and_spreads_the_demo_counties():
    codes = ["410225", "341524", "370982"]
    offsets = [stagger_seconds(code) for code in codes]
    assert offsets == [stagger_seconds(code) for code in codes]
    assert len(set(offsets)) == 3
    assert all(0 <= offset < settings.NIGHTLY_STAGGER_SECONDS for offset in offsets)
    # Independently: the first four bytes of SHA-256 of the code, modulo the window.
    import hashlib

    for code, offset in zip(codes, offsets, strict=True):
        expected = int(hashlib.sha256(code.encode()).hexdigest()[:8], 16) % settings.NIGHTLY_STAGGER_SECONDS
        assert offset == expected
    with override_settings(NIGHTLY_STAGGER_SECONDS=60):
        assert all(0 <= stagger_seconds(code) < 60 for code in codes)
    with override_settings(NIGHTLY_STAGGER_SECONDS=0):
        assert [stagger_seconds(code) for code in codes] == [0, 0, 0]


def test_beat_runs_the_dispatch_at_the_nightly_hour_in_shanghai():
    entry = app.conf.beat_schedule["nightly-dispatch"]
    assert entry["task"] == "counties.tasks.dispatch_nightly"
    assert entry["task"] == dispatch_nightly.name
    schedule = entry["schedule"]
    assert schedule.hour == {settings.NIGHTLY_HOUR}
    assert schedule.minute == {0}
    assert schedule.day_of_week == set(range(7))
    assert app.conf.timezone == "Asia/Shanghai"
    assert app.conf.timezone == settings.TIME_ZONE
    # After a run at 01:00 Shanghai (17:00 UTC the day before), the next is that day's
    # NIGHTLY_HOUR:00 Shanghai, not NIGHTLY_HOUR:00 UTC.
    schedule = schedule.__class__(hour=settings.NIGHTLY_HOUR, minute=0, app=app)
    last = dt.datetime(2024, 5, 1, 17, 0, tzinfo=dt.UTC)
    start, delta, _now = schedule.remaining_delta(last)
    assert start + delta == dt.datetime(2024, 5, 2, settings.NIGHTLY_HOUR, 0, tzinfo=SHANGHAI)


# --- dispatch: messages on the broker --------------------------------------------------------


def _drain(queue: str) -> list:
    """Take every message off this session's queue (acknowledging them) and return them."""
    messages = []
    with app.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue)
        try:
            while True:
                try:
                    message = simple.get(timeout=1)
                except simple.Empty:
                    break
                message.ack()
                messages.append(message)
        finally:
            simple.close()
    return messages


def test_dispatch_queues_one_staggered_task_per_live_county(lankao, jinzhai, celery_queue):
    _drain(celery_queue)
    # jinzhai suspended; a third, suspended county (registry row only) and one still onboarding.
    County.objects.filter(pk=jinzhai.pk).update(status=County.Status.SUSPENDED)
    County.objects.create(schema_name="county_370982", code="370982", name="新泰市", status=County.Status.SUSPENDED)
    County.objects.create(schema_name="county_411325", code="411325", name="内乡县", status=County.Status.ONBOARDING)
    live = sorted(County.objects.filter(status=County.Status.LIVE).values_list("code", flat=True))
    assert LANKAO in live
    assert JINZHAI not in live

    before = dt.datetime.now(dt.UTC)
    queued = dispatch_nightly("2024-05-04")
    after = dt.datetime.now(dt.UTC)

    assert queued == {code: stagger_seconds(code) for code in live}
    messages = _drain(celery_queue)
    assert len(messages) == len(live)
    by_schema = {message.headers["_schema_name"]: message for message in messages}
    assert sorted(by_schema) == [f"county_{code}" for code in live]
    for code in live:
        message = by_schema[f"county_{code}"]
        assert message.headers["task"] == nightly_county.name == "counties.tasks.nightly_county"
        args, kwargs, _embed = message.payload
        assert (args, kwargs) == ([], {"business_date": "2024-05-04"})
        offset = stagger_seconds(code)
        assert 0 <= offset < settings.NIGHTLY_STAGGER_SECONDS
        eta = dt.datetime.fromisoformat(message.headers["eta"])
        window = (before + dt.timedelta(seconds=offset), after + dt.timedelta(seconds=offset))
        assert window[0] - dt.timedelta(seconds=1) <= eta <= window[1] + dt.timedelta(seconds=1), (code, eta, window)


def test_dispatch_defaults_to_yesterday_in_shanghai(lankao, celery_queue):
    _drain(celery_queue)
    instant = dt.datetime(2024, 5, 1, 18, 30, tzinfo=dt.UTC)  # 2024-05-02 02:30 in Shanghai
    from unittest import mock

    with mock.patch("django.utils.timezone.now", return_value=instant):
        dispatch_nightly()
    messages = _drain(celery_queue)
    assert {message.payload[1]["business_date"] for message in messages} == {"2024-05-01"}
    assert len(messages) == County.objects.filter(status=County.Status.LIVE).count()


# --- dispatch end to end on a real worker ----------------------------------------------------


@pytest.fixture
def worker(celery_queue, django_db_blocker):
    from celery.contrib.testing.worker import start_worker

    _drain(celery_queue)
    with django_db_blocker.unblock(), start_worker(
        app, pool="solo", perform_ping_check=False, queues=[celery_queue], shutdown_timeout=30
    ) as running:
        yield running


def test_beat_dispatch_runs_every_live_county_on_a_worker(worker, django_db_blocker):
    """Beat → dispatch (public schema) → one nightly_county per county, each run by the worker
    inside its own county's schema (a short stagger window so the test need not wait)."""
    business_date = dt.date(2001, 2, 3)
    with django_db_blocker.unblock():
        schemas = dict(County.objects.filter(status=County.Status.LIVE).values_list("code", "schema_name"))
    assert {LANKAO: "county_410225", JINZHAI: "county_341524"}.items() <= schemas.items()
    with django_db_blocker.unblock(), override_settings(NIGHTLY_STAGGER_SECONDS=3):
        try:
            with schema_context(schemas[LANKAO]):
                township = Township.objects.create(code="410225196", name="夜间测试镇")

            queued = dispatch_nightly.apply_async(kwargs={"business_date": business_date.isoformat()})
            assert queued.get(timeout=30) == {code: stagger_seconds(code) for code in schemas}

            deadline = time.monotonic() + 60
            runs = {}
            while time.monotonic() < deadline:
                runs = {}
                for code, schema in schemas.items():
                    with schema_context(schema):
                        runs[code] = NightlyRun.objects.filter(business_date=business_date).first()
                if all(run and run.status in (NightlyRun.Status.SUCCEEDED, NightlyRun.Status.FAILED) for run in runs.values()):
                    break
                time.sleep(0.2)
            assert {code: (run.status, run.attempts) if run else None for code, run in runs.items()} == {
                code: (NightlyRun.Status.SUCCEEDED, 1) for code in schemas
            }
            # Each ran in its own schema: lankao's extra township shows only in lankao's stats.
            with schema_context(schemas[LANKAO]):
                expected_lankao = Township.objects.count()
                assert TownshipDailyStat.objects.filter(business_date=business_date, township=township).count() == 1
                assert runs[LANKAO].steps[0]["counts"] == {"townships": expected_lankao}
            with schema_context(schemas[JINZHAI]):
                assert runs[JINZHAI].steps[0]["counts"] == {"townships": Township.objects.count()}
                assert Township.objects.filter(code="410225196").count() == 0
        finally:
            for schema in schemas.values():
                with schema_context(schema):
                    TownshipDailyStat.objects.filter(business_date=business_date).delete()
                    NightlyRun.objects.filter(business_date=business_date).delete()
                    Township.objects.filter(code="410225196").delete()
