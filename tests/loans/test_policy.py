"""Credit policy: validation of every rule, the draft → submit → approve flow with a second
official, retiring the previous active policy, the default bootstrap, and the append-only audit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError
from django.db.utils import ProgrammingError

from loans.models import CreditPolicy, PolicyEvent
from loans.policy import (
    DEFAULT_GRADES,
    policy_active,
    policy_approve,
    policy_create_draft,
    policy_ensure_default,
    policy_reject,
    policy_submit,
    policy_update_draft,
)
from platform.models import LendingPartner
from tests.conftest import in_county

GRADES = [
    {"grade": "A", "max_pd": "0.01", "multiplier": "1.5", "cap": "200000", "annual_rate": "0.0435"},
    {"grade": "B", "max_pd": "0.02", "multiplier": "1.2", "cap": "150000", "annual_rate": "0.0520"},
    {"grade": "C", "max_pd": "0.04", "multiplier": "0.9", "cap": "80000", "annual_rate": "0.0650"},
    {"grade": "D", "max_pd": "0.08", "multiplier": "0.5", "cap": "30000", "annual_rate": "0.0800"},
    {"grade": "E", "max_pd": "1", "multiplier": "0", "cap": "0", "annual_rate": "0.0950"},
]


@pytest.fixture
def partner(lankao):
    with in_county(lankao):
        yield LendingPartner.objects.create(code="mybank", name="网商银行")


def draft(partner, actor="official-a", **params) -> CreditPolicy:
    params.setdefault("grades", [dict(grade) for grade in GRADES])
    return policy_create_draft(partner=partner, actor=actor, **params)


def events(policy) -> list[tuple[str, str]]:
    return list(PolicyEvent.objects.filter(policy=policy).order_by("id").values_list("event", "actor"))


def codes(error: ValidationError) -> set[tuple[str, str]]:
    return {(field, item.code) for field, items in error.error_dict.items() for item in items}


def with_grade(position: int, **changes) -> list[dict]:
    grades = [dict(grade) for grade in GRADES]
    grades[position].update(changes)
    return grades


# --- Drafts and validation ---------------------------------------------------------------------


def test_a_draft_takes_the_defaults_normalises_decimals_and_records_every_field(partner):
    policy = draft(partner)

    assert (policy.version, policy.status, policy.created_by) == (1, "draft", "official-a")
    assert (policy.min_line, policy.max_line, policy.rounding_unit) == (
        Decimal("1000.00"),
        Decimal("200000.00"),
        Decimal("100.00"),
    )
    assert (policy.min_age, policy.max_age, policy.validity_months) == (18, 65, 12)
    # Decimal strings, one spelling each; caps in fen.
    assert policy.grades[1] == {
        "grade": "B",
        "max_pd": "0.02",
        "multiplier": "1.2",
        "cap": "150000.00",
        "annual_rate": "0.052",
    }
    assert policy.grades[4] == {"grade": "E", "max_pd": "1", "multiplier": "0", "cap": "0.00", "annual_rate": "0.095"}

    (created,) = PolicyEvent.objects.filter(policy=policy)
    assert (created.event, created.actor) == ("created", "official-a")
    assert created.changes["min_line"] == {"from": None, "to": "1000.00"}
    assert created.changes["status"] == {"from": None, "to": "draft"}
    assert created.changes["partner"] == {"from": None, "to": "mybank"}
    assert created.changes["grades"]["to"] == policy.grades
    assert "submitted_by" not in created.changes  # empty at creation: nothing to report

    assert draft(partner).version == 2


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"min_line": "500"}, {("max_line", "line_bounds")}),
        ({"max_line": "250000"}, {("max_line", "line_bounds")}),
        ({"min_line": "5000", "max_line": "4000"}, {("max_line", "line_bounds")}),
        ({"min_line": "0"}, {("max_line", "line_bounds")}),
        ({"min_line": "1000.001"}, {("min_line", "decimal_places")}),
        ({"max_line": 200000.0}, {("max_line", "decimal")}),  # floats refused for money
        ({"rounding_unit": "0"}, {("rounding_unit", "rounding_unit")}),
        ({"rounding_unit": "-100"}, {("rounding_unit", "rounding_unit")}),
        # 1,100 rounded down to a multiple of 300 is 900, under the minimum.
        ({"rounding_unit": "300"}, {("rounding_unit", "rounding_multiple")}),
        ({"min_age": 17}, {("max_age", "age_bounds")}),
        ({"max_age": 71}, {("max_age", "age_bounds")}),
        ({"min_age": 40, "max_age": 40}, {("max_age", "age_bounds")}),
        ({"min_age": "18"}, {("min_age", "integer")}),
        ({"validity_months": 0}, {("validity_months", "validity_months")}),
        ({"validity_months": 37}, {("validity_months", "validity_months")}),
        ({"base_income": "-1"}, {("base_income", "negative")}),
        ({"grades": []}, {("grades", "grades_empty")}),
        ({"grades": None}, {("grades", "grades_empty")}),
        ({"grades": with_grade(0, max_pd=0.01)}, {("grades", "decimal")}),
        ({"grades": with_grade(0, max_pd="abc")}, {("grades", "decimal")}),
        ({"grades": with_grade(1, max_pd="0.005")}, {("grades", "grade_order")}),
        ({"grades": with_grade(4, max_pd="0.5")}, {("grades", "grade_catch_all")}),
        ({"grades": with_grade(4, max_pd="1.5")}, {("grades", "max_pd"), ("grades", "grade_catch_all")}),
        ({"grades": with_grade(3, multiplier="-0.5")}, {("grades", "multiplier"), ("grades", "grade_monotonic")}),
        ({"grades": with_grade(0, cap="250000")}, {("grades", "cap")}),
        ({"grades": with_grade(3, cap="500")}, {("grades", "cap")}),
        ({"grades": with_grade(0, annual_rate="0")}, {("grades", "annual_rate")}),
        ({"grades": with_grade(4, annual_rate="0.2401")}, {("grades", "annual_rate")}),
        ({"grades": with_grade(4, cap="1000")}, {("grades", "no_line")}),
        ({"grades": with_grade(1, grade="A")}, {("grades", "grade_duplicate")}),
        ({"grades": with_grade(1, grade="")}, {("grades", "grade_name")}),
        ({"grades": with_grade(1, multiplier="1.6")}, {("grades", "grade_monotonic")}),
        ({"grades": with_grade(1, annual_rate="0.04")}, {("grades", "grade_monotonic")}),
        (
            {"grades": [*GRADES[:4], {"grade": "E", "max_pd": "1", "multiplier": "0", "cap": "0"}]},
            {("grades", "grade_keys")},
        ),
    ],
)
def test_invalid_policies_are_refused_with_the_rule_broken(partner, params, expected):
    with pytest.raises(ValidationError) as caught:
        draft(partner, **params)
    assert codes(caught.value) == expected
    assert not CreditPolicy.objects.exists()


def test_every_broken_rule_is_reported_at_once_in_both_languages(partner):
    with pytest.raises(ValidationError) as caught:
        draft(partner, min_line="500", validity_months=48, grades=with_grade(4, annual_rate="0.30"))
    assert codes(caught.value) == {
        ("max_line", "line_bounds"),
        ("validity_months", "validity_months"),
        ("grades", "annual_rate"),
    }
    (message,) = caught.value.message_dict["max_line"]
    assert (
        message
        == "额度范围须满足 1,000 ≤ 最低额度 ≤ 最高额度 ≤ 200,000 元 / Lines must satisfy 1,000 ≤ minimum ≤ maximum ≤ 200,000 yuan"
    )
    (message,) = caught.value.message_dict["grades"]
    assert message == "第 5 个等级（E）/ grade 5 (E): 年利率须在 (0, 24%] 内 / the annual rate must be in (0, 24%]"


def test_the_boundaries_themselves_are_allowed(partner):
    policy = draft(
        partner,
        min_line="1000",
        max_line="1000",
        rounding_unit="1000",
        min_age=18,
        max_age=70,
        validity_months=36,
        grades=[{"grade": "X", "max_pd": "1", "multiplier": "1", "cap": "1000", "annual_rate": "0.24"}],
    )
    assert policy.grades == [{"grade": "X", "max_pd": "1", "multiplier": "1", "cap": "1000.00", "annual_rate": "0.24"}]


def test_unknown_fields_and_inactive_partners_are_refused(partner):
    with pytest.raises(TypeError, match="unknown policy fields: min_lines"):
        draft(partner, min_lines="1000")
    partner.is_active = False
    partner.save()
    with pytest.raises(ValidationError) as caught:
        draft(partner)
    assert codes(caught.value) == {("partner", "partner_inactive")}


def test_editing_a_draft_records_only_what_changed(partner):
    policy = draft(partner)
    policy_update_draft(policy=policy, actor="official-b", max_line="150000", grades=with_grade(0, cap="150000"))

    policy.refresh_from_db()
    assert policy.max_line == Decimal("150000.00")
    update = PolicyEvent.objects.filter(policy=policy, event="updated").get()
    assert update.actor == "official-b"
    assert set(update.changes) == {"max_line", "grades"}
    assert update.changes["max_line"] == {"from": "200000.00", "to": "150000.00"}
    assert update.changes["grades"]["from"][0]["cap"] == "200000.00"
    assert update.changes["grades"]["to"][0]["cap"] == "150000.00"

    # The same values spelled differently are no change, and write no event.
    policy_update_draft(policy=policy, actor="official-b", max_line="150000.0", rounding_unit=100)
    assert events(policy) == [("created", "official-a"), ("updated", "official-b")]

    # An invalid edit changes nothing.
    with pytest.raises(ValidationError):
        policy_update_draft(policy=policy, actor="official-b", max_line="900")
    policy.refresh_from_db()
    assert policy.max_line == Decimal("150000.00")


# --- Approval ----------------------------------------------------------------------------------


def test_activation_needs_a_second_official(partner):
    policy = draft(partner, actor="official-a")
    policy_submit(policy=policy, actor="official-a")
    assert (policy.status, policy.submitted_by) == ("pending", "official-a")

    with pytest.raises(ValidationError) as caught:
        policy_approve(policy=policy, actor="official-a")
    assert caught.value.code == "same_official"
    assert caught.value.messages == [
        "政策生效需要另一名工作人员审批，提交人不能审批自己提交的政策"
        " / Activation needs a second official: the submitter cannot approve their own policy"
    ]
    policy.refresh_from_db()
    assert policy.status == "pending"
    assert policy_active() is None

    policy_approve(policy=policy, actor="official-b")
    policy.refresh_from_db()
    assert (policy.status, policy.approved_by) == ("active", "official-b")
    assert policy.activated_at is not None
    assert policy_active() == policy
    assert events(policy) == [("created", "official-a"), ("submitted", "official-a"), ("approved", "official-b")]
    approved = PolicyEvent.objects.get(policy=policy, event="approved")
    assert approved.changes["status"] == {"from": "pending", "to": "active"}
    assert approved.changes["approved_by"] == {"from": "", "to": "official-b"}
    assert approved.changes["activated_at"]["to"] == policy.activated_at.isoformat()


def test_approving_retires_the_previous_active_policy_in_the_same_step(partner):
    first = draft(partner)
    policy_submit(policy=first, actor="official-a")
    policy_approve(policy=first, actor="official-b")

    second = draft(partner, validity_months=6)
    with pytest.raises(ValidationError):
        policy_update_draft(policy=first, actor="official-a", validity_months=6)  # active: not editable
    policy_submit(policy=second, actor="official-c")
    policy_approve(policy=second, actor="official-a")

    first.refresh_from_db()
    assert (first.status, second.status) == ("retired", "active")
    assert policy_active() == second
    assert list(CreditPolicy.objects.filter(status="active")) == [second]
    retired = PolicyEvent.objects.get(policy=first, event="retired")
    assert retired.actor == "official-a"
    assert retired.changes == {"status": {"from": "active", "to": "retired"}, "superseded_by": 2}
    # Retired before the new one went active (the one-active constraint is checked per statement).
    assert retired.id < PolicyEvent.objects.get(policy=second, event="approved").id


def test_the_database_allows_one_active_policy_only(partner):
    policy_ensure_default(partner=partner)
    other = draft(partner)
    with pytest.raises(IntegrityError, match="one_active_policy"), transaction.atomic():
        CreditPolicy.objects.filter(pk=other.pk).update(status="active")


def test_wrong_steps_are_refused(partner):
    policy = draft(partner)
    with pytest.raises(ValidationError) as caught:
        policy_approve(policy=policy, actor="official-b")
    assert caught.value.code == "invalid_status"
    with pytest.raises(ValidationError):
        policy_reject(policy=policy, actor="official-b")
    policy_submit(policy=policy, actor="official-a")
    with pytest.raises(ValidationError):
        policy_submit(policy=policy, actor="official-a")
    with pytest.raises(ValidationError):
        policy_update_draft(policy=policy, actor="official-a", max_line="100000")
    with pytest.raises(ValidationError) as caught:
        policy_approve(policy=policy, actor=" ")
    assert caught.value.code == "actor"


def test_a_rejected_policy_goes_back_to_draft_and_can_be_resubmitted(partner):
    policy = draft(partner)
    policy_submit(policy=policy, actor="official-a")
    policy_reject(policy=policy, actor="official-b", reason="E 级利率过高")
    assert (policy.status, policy.submitted_by) == ("draft", "")
    rejected = PolicyEvent.objects.get(policy=policy, event="rejected")
    assert rejected.changes == {
        "status": {"from": "pending", "to": "draft"},
        "submitted_by": {"from": "official-a", "to": ""},
        "reason": "E 级利率过高",
    }
    policy_update_draft(policy=policy, actor="official-a", grades=with_grade(4, annual_rate="0.09"))
    policy_submit(policy=policy, actor="official-a")
    policy_approve(policy=policy, actor="official-b")
    assert [event for event, _actor in events(policy)] == [
        "created",
        "submitted",
        "rejected",
        "updated",
        "submitted",
        "approved",
    ]


def test_a_stale_copy_cannot_approve_what_was_meanwhile_rejected(partner):
    policy = draft(partner)
    policy_submit(policy=policy, actor="official-a")
    stale = CreditPolicy.objects.get(pk=policy.pk)
    policy_reject(policy=policy, actor="official-c")
    with pytest.raises(ValidationError) as caught:
        policy_approve(policy=stale, actor="official-b")
    assert caught.value.code == "invalid_status"
    assert policy_active() is None


# --- The default -------------------------------------------------------------------------------


def test_a_new_county_bootstraps_the_default_policy_once(partner):
    assert policy_active() is None
    policy = policy_ensure_default(partner=partner)

    assert (policy.version, policy.status, policy.partner) == (1, "active", partner)
    assert policy.grades == [dict(grade) for grade in DEFAULT_GRADES]
    assert [grade["grade"] for grade in policy.grades] == ["A", "B", "C", "D", "E"]
    assert (policy.created_by, policy.submitted_by, policy.approved_by) == ("system", "", "system")
    assert events(policy) == [("created", "system"), ("bootstrap_activated", "system")]
    bootstrap = PolicyEvent.objects.get(policy=policy, event="bootstrap_activated")
    assert bootstrap.changes["bootstrap"] is True
    assert bootstrap.changes["status"] == {"from": "draft", "to": "active"}

    assert policy_ensure_default(partner=partner) == policy
    assert CreditPolicy.objects.count() == 1
    assert PolicyEvent.objects.count() == 2


def test_the_default_steps_in_when_drafts_exist_but_none_is_active(partner):
    pending = draft(partner)
    policy_submit(policy=pending, actor="official-a")
    policy = policy_ensure_default(partner=partner)
    assert (policy.version, policy.status) == (2, "active")
    # The officials' policy can still be approved, and retires the default.
    policy_approve(policy=pending, actor="official-b")
    policy.refresh_from_db()
    assert (policy.status, policy_active()) == ("retired", pending)


def test_policies_are_per_county(partner, jinzhai):
    policy_ensure_default(partner=partner)
    with in_county(jinzhai):
        assert policy_active() is None
        assert not PolicyEvent.objects.exists()


# --- Append-only audit -------------------------------------------------------------------------


def refused(operation) -> str:
    with pytest.raises(ProgrammingError) as caught, transaction.atomic():
        operation()
    assert caught.value.__cause__.sqlstate == "42501"
    return str(caught.value)


def test_policy_events_cannot_be_changed_or_deleted(partner):
    policy = policy_ensure_default(partner=partner)
    before = list(PolicyEvent.objects.order_by("id").values_list())

    assert "table loans_policyevent is append-only: UPDATE refused" in refused(
        lambda: PolicyEvent.objects.update(actor="someone-else")
    )
    assert "DELETE refused" in refused(lambda: PolicyEvent.objects.first().delete())

    def truncate():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("TRUNCATE loans_policyevent")

    assert "TRUNCATE refused" in refused(truncate)
    assert list(PolicyEvent.objects.order_by("id").values_list()) == before
    # And a policy with history cannot be deleted out from under it.
    with pytest.raises(ProtectedError), transaction.atomic():
        policy.delete()
