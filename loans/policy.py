"""Writes and reads for the county's credit policy.

A policy is versioned and moves DRAFT → PENDING (submitted) → ACTIVE (approved by a second
official) → RETIRED (when the next one is approved); a rejected submission goes back to DRAFT.
Only drafts can be edited. Exactly one policy is ACTIVE: approving one retires the previous in
the same transaction, and the ``one_active_policy`` constraint refuses anything else. Every
change writes a :class:`~loans.models.PolicyEvent` (append-only: the database refuses UPDATE,
DELETE and TRUNCATE) whose ``changes`` maps each changed field to ``{"from": …, "to": …}``.

Policy writes are rare, so each takes an EXCLUSIVE lock on the policy table: they run one at a
time (version numbers and the retire-then-activate step cannot race) while plain reads, such as
the nightly batch's, carry on.

Bounds (DESIGN.md): lines 1,000–200,000 yuan, ages 18–70, validity 1–36 months, annual rates
in (0, 24%]. Grades are listed best first with increasing ``max_pd``, the last a catch-all with
``max_pd`` "1"; a farmer gets the first grade whose ``max_pd`` is at least their PD. Decimals
are stored in the grade table as strings, never floats.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from loans.models import CreditPolicy, PolicyEvent
from platform.models import LendingPartner

Status = CreditPolicy.Status

LINE_FLOOR = Decimal("1000")
LINE_CEILING = Decimal("200000")
AGE_FLOOR, AGE_CEILING = 18, 70
VALIDITY_MONTHS_MAX = 36
ANNUAL_RATE_MAX = Decimal("0.24")
BOOTSTRAP_ACTOR = "system"

# The fields an official sets; everything else (status, who did what) follows from the flow.
POLICY_FIELDS = (
    "partner",
    "min_line",
    "max_line",
    "rounding_unit",
    "min_age",
    "max_age",
    "validity_months",
    "base_income",
    "income_per_mu",
    "grades",
)
GRADE_KEYS = ("grade", "max_pd", "multiplier", "cap", "annual_rate")
# Decimal places allowed per grade key: PDs and rates as stored on assessments and lines (6),
# caps in fen (2).
_GRADE_PLACES = {"max_pd": 6, "multiplier": 4, "cap": 2, "annual_rate": 6}
_MONEY = Decimal("0.01")

# The shipped policy a new county starts with (policy_ensure_default). Multipliers are scaled
# to DESIGN.md's published average line (≈ 15.9k yuan): on the default scorecard's synthetic
# sample with the default income proxy (20,000 + 1,500 yuan per mu), multipliers of
# 1.5/1.2/0.9/0.5 averaged 39k per granted line, these 0.8/0.6/0.45/0.25 about 21k
# (median 17k). PD > 8% (grade E, about 3% of farmers) gets no line.
DEFAULT_GRADES: tuple[dict[str, str], ...] = (
    {"grade": "A", "max_pd": "0.01", "multiplier": "0.8", "cap": "200000.00", "annual_rate": "0.0435"},
    {"grade": "B", "max_pd": "0.02", "multiplier": "0.6", "cap": "150000.00", "annual_rate": "0.052"},
    {"grade": "C", "max_pd": "0.04", "multiplier": "0.45", "cap": "80000.00", "annual_rate": "0.065"},
    {"grade": "D", "max_pd": "0.08", "multiplier": "0.25", "cap": "30000.00", "annual_rate": "0.08"},
    {"grade": "E", "max_pd": "1", "multiplier": "0", "cap": "0.00", "annual_rate": "0.095"},
)


# --- Reads -------------------------------------------------------------------------------------


def policy_active() -> CreditPolicy | None:
    """The county's policy in force, or None before the first one is activated."""
    return CreditPolicy.objects.select_related("partner").filter(status=Status.ACTIVE).first()


# --- Writes ------------------------------------------------------------------------------------


def policy_create_draft(*, partner: LendingPartner, actor: str, **params: Any) -> CreditPolicy:
    """A new DRAFT at the next version. Fields not given take the model defaults (the grade
    table is required)."""
    _check_actor(actor)
    _check_known(params)
    with transaction.atomic():
        _lock_policies()
        values = _validated({**_model_defaults(), "grades": None, **params, "partner": partner})
        policy = CreditPolicy.objects.create(version=_next_version(), status=Status.DRAFT, created_by=actor, **values)
        _event(policy, "created", actor, _diff({}, _snapshot(policy)))
    return policy


def policy_update_draft(*, policy: CreditPolicy, actor: str, **params: Any) -> CreditPolicy:
    """Change fields of a DRAFT. Records only the fields that actually change (none: no event)."""
    _check_actor(actor)
    _check_known(params)
    with transaction.atomic():
        _lock_and_reload(policy)
        _require_status(policy, Status.DRAFT, _("只能修改草稿状态的政策 / Only a draft policy can be edited"))
        before = _snapshot(policy)
        values = _validated({**{name: getattr(policy, name) for name in POLICY_FIELDS}, **params})
        for name, value in values.items():
            setattr(policy, name, value)
        changes = _diff(before, _snapshot(policy))
        if changes:
            policy.save(update_fields=list(values))
            _event(policy, "updated", actor, changes)
    return policy


def policy_submit(*, policy: CreditPolicy, actor: str) -> CreditPolicy:
    """Send a DRAFT for approval. Validated again: rules may have tightened since it was saved."""
    _check_actor(actor)
    with transaction.atomic():
        _lock_and_reload(policy)
        _require_status(policy, Status.DRAFT, _("只能提交草稿状态的政策 / Only a draft policy can be submitted"))
        _validated({name: getattr(policy, name) for name in POLICY_FIELDS})
        _transition(policy, "submitted", actor, status=Status.PENDING, submitted_by=actor)
    return policy


def policy_reject(*, policy: CreditPolicy, actor: str, reason: str = "") -> CreditPolicy:
    """Send a PENDING policy back to DRAFT (its submitter may also withdraw it this way)."""
    _check_actor(actor)
    with transaction.atomic():
        _lock_and_reload(policy)
        _require_status(
            policy, Status.PENDING, _("只能退回待审批的政策 / Only a policy awaiting approval can be rejected")
        )
        _transition(policy, "rejected", actor, extra={"reason": reason}, status=Status.DRAFT, submitted_by="")
    return policy


def policy_approve(*, policy: CreditPolicy, actor: str) -> CreditPolicy:
    """Activate a PENDING policy, approved by an official other than its submitter; the
    previous active policy is retired in the same transaction."""
    _check_actor(actor)
    with transaction.atomic():
        _lock_and_reload(policy)
        _require_status(
            policy, Status.PENDING, _("只能审批待审批的政策 / Only a policy awaiting approval can be approved")
        )
        if actor == policy.submitted_by:
            raise ValidationError(
                _(
                    "政策生效需要另一名工作人员审批，提交人不能审批自己提交的政策"
                    " / Activation needs a second official: the submitter cannot approve their own policy"
                ),
                code="same_official",
            )
        _check_partner(policy.partner)
        _activate(policy, actor, event="approved", approved_by=actor)
    return policy


def policy_ensure_default(*, partner: LendingPartner, actor: str = BOOTSTRAP_ACTOR) -> CreditPolicy:
    """The active policy; if the county has none, create the shipped default at the next
    version (v1 for a new county) and activate it directly.

    This bootstrap is the one activation without a second official, so a new county can be
    assessed on its first night; it is audited as ``bootstrap_activated`` by ``actor``.
    Officials replace it through the normal draft → approval flow.
    """
    _check_actor(actor)
    with transaction.atomic():
        _lock_policies()
        active = policy_active()
        if active is not None:
            return active
        values = _validated(
            {**_model_defaults(), "grades": [dict(grade) for grade in DEFAULT_GRADES], "partner": partner}
        )
        policy = CreditPolicy.objects.create(version=_next_version(), status=Status.DRAFT, created_by=actor, **values)
        _event(policy, "created", actor, _diff({}, _snapshot(policy)))
        _activate(policy, actor, event="bootstrap_activated", approved_by=actor, extra={"bootstrap": True})
    return policy


# --- Steps -------------------------------------------------------------------------------------


def _activate(policy: CreditPolicy, actor: str, *, event: str, approved_by: str, extra: dict | None = None) -> None:
    # The previous one goes first: one_active_policy is checked per statement.
    previous = CreditPolicy.objects.filter(status=Status.ACTIVE).exclude(pk=policy.pk).first()
    if previous is not None:
        _transition(previous, "retired", actor, extra={"superseded_by": policy.version}, status=Status.RETIRED)
    _transition(
        policy,
        event,
        actor,
        extra=extra,
        status=Status.ACTIVE,
        approved_by=approved_by,
        activated_at=timezone.now(),
    )


def _transition(policy: CreditPolicy, event: str, actor: str, *, extra: dict | None = None, **fields: Any) -> None:
    before = _snapshot(policy)
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.save(update_fields=list(fields))
    _event(policy, event, actor, {**_diff(before, _snapshot(policy)), **(extra or {})})


def _event(policy: CreditPolicy, event: str, actor: str, changes: dict) -> PolicyEvent:
    return PolicyEvent.objects.create(policy=policy, event=event, actor=actor, changes=changes)


def _lock_policies() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {CreditPolicy._meta.db_table} IN EXCLUSIVE MODE")


def _lock_and_reload(policy: CreditPolicy) -> None:
    """Lock, then re-read: the caller's copy may predate another official's change."""
    _lock_policies()
    policy.refresh_from_db()


def _next_version() -> int:
    latest = CreditPolicy.objects.order_by("-version").values_list("version", flat=True).first()
    return (latest or 0) + 1


def _require_status(policy: CreditPolicy, status: str, message: str) -> None:
    if policy.status != status:
        raise ValidationError(message, code="invalid_status")


def _check_actor(actor: str) -> None:
    if not isinstance(actor, str) or not actor.strip():
        raise ValidationError(_("必须注明操作人 / The acting official is required"), code="actor")


def _check_known(params: dict) -> None:
    unknown = sorted(set(params) - set(POLICY_FIELDS) - {"partner"})
    if unknown:
        raise TypeError(f"unknown policy fields: {', '.join(unknown)}")


def _check_partner(partner: LendingPartner) -> None:
    if not partner.is_active:
        raise ValidationError(_("该贷款机构已停用 / This lending partner is not active"), code="partner_inactive")


def _model_defaults() -> dict[str, Any]:
    return {
        name: CreditPolicy._meta.get_field(name).get_default()
        for name in POLICY_FIELDS
        if name not in ("partner", "grades")
    }


# --- Snapshots and diffs -----------------------------------------------------------------------


def _snapshot(policy: CreditPolicy) -> dict[str, Any]:
    """JSON-safe values of everything an event may report (money as strings, partner by code)."""
    values: dict[str, Any] = {
        "version": policy.version,
        "status": policy.status,
        "partner": policy.partner.code,
        "submitted_by": policy.submitted_by,
        "approved_by": policy.approved_by,
        "activated_at": policy.activated_at.isoformat() if policy.activated_at else None,
        "grades": policy.grades,
    }
    for name in ("min_line", "max_line", "rounding_unit", "base_income", "income_per_mu"):
        values[name] = _text(Decimal(getattr(policy, name)).quantize(_MONEY))
    for name in ("min_age", "max_age", "validity_months"):
        values[name] = getattr(policy, name)
    return values


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: {"from": before.get(name), "to": value}
        for name, value in after.items()
        if before.get(name) != value and not (name not in before and value in ("", None))
    }


def _text(value: Decimal) -> str:
    return format(value, "f")


# --- Validation --------------------------------------------------------------------------------


class _Errors:
    """Collects messages per field, so an official sees every problem at once."""

    def __init__(self) -> None:
        self.by_field: dict[str, list[ValidationError]] = {}

    def add(self, field: str, message: str, code: str) -> None:
        self.by_field.setdefault(field, []).append(ValidationError(message, code=code))

    def raise_any(self) -> None:
        if self.by_field:
            raise ValidationError(self.by_field)


def _validated(values: dict[str, Any]) -> dict[str, Any]:
    """Checked and normalised field values (money quantised to fen, grades as Decimal strings);
    raises one ValidationError naming every bad field."""
    errors = _Errors()
    clean: dict[str, Any] = {}

    partner = values["partner"]
    if not isinstance(partner, LendingPartner):
        errors.add("partner", _("必须指定贷款机构 / A lending partner is required"), "partner")
    elif not partner.is_active:
        errors.add("partner", _("该贷款机构已停用 / This lending partner is not active"), "partner_inactive")
    clean["partner"] = partner

    for name in ("min_line", "max_line", "rounding_unit", "base_income", "income_per_mu"):
        clean[name] = _decimal(values[name], name, 2, errors)
    min_line, max_line, unit = clean["min_line"], clean["max_line"], clean["rounding_unit"]
    if min_line is not None and max_line is not None:
        if not LINE_FLOOR <= min_line <= max_line <= LINE_CEILING:
            errors.add(
                "max_line",
                _(
                    "额度范围须满足 %(floor)s ≤ 最低额度 ≤ 最高额度 ≤ %(ceiling)s 元"
                    " / Lines must satisfy %(floor)s ≤ minimum ≤ maximum ≤ %(ceiling)s yuan"
                )
                % {"floor": f"{LINE_FLOOR:,}", "ceiling": f"{LINE_CEILING:,}"},
                "line_bounds",
            )
            min_line = max_line = None  # the grades' caps are checked against sound bounds only
    if unit is not None:
        if unit <= 0:
            errors.add("rounding_unit", _("取整单位必须大于 0 / The rounding unit must be positive"), "rounding_unit")
        elif min_line is not None and max_line is not None and (min_line % unit or max_line % unit):
            # Otherwise rounding down could take a line at the minimum below it.
            errors.add(
                "rounding_unit",
                _(
                    "最低和最高额度必须是取整单位的整数倍 / The minimum and maximum lines must be multiples of the rounding unit"
                ),
                "rounding_multiple",
            )
    for name in ("base_income", "income_per_mu"):
        if clean[name] is not None and clean[name] < 0:
            errors.add(name, _("收入参数不能为负 / Income parameters cannot be negative"), "negative")

    for name in ("min_age", "max_age", "validity_months"):
        clean[name] = _integer(values[name], name, errors)
    min_age, max_age = clean["min_age"], clean["max_age"]
    if min_age is not None and max_age is not None and not AGE_FLOOR <= min_age < max_age <= AGE_CEILING:
        errors.add(
            "max_age",
            _(
                "年龄须满足 %(floor)s ≤ 最低年龄 < 最高年龄 ≤ %(ceiling)s / Ages must satisfy %(floor)s ≤ minimum < maximum ≤ %(ceiling)s"
            )
            % {"floor": AGE_FLOOR, "ceiling": AGE_CEILING},
            "age_bounds",
        )
    months = clean["validity_months"]
    if months is not None and not 1 <= months <= VALIDITY_MONTHS_MAX:
        errors.add(
            "validity_months",
            _("额度有效期须在 1 到 %(max)s 个月之间 / Line validity must be 1 to %(max)s months")
            % {"max": VALIDITY_MONTHS_MAX},
            "validity_months",
        )

    clean["grades"] = _validated_grades(values["grades"], min_line, max_line, errors)
    errors.raise_any()
    return clean


def _validated_grades(grades: Any, min_line: Decimal | None, max_line: Decimal | None, errors: _Errors) -> list[dict]:
    if not isinstance(grades, list | tuple) or not grades:
        errors.add("grades", _("等级表不能为空 / The grade table cannot be empty"), "grades_empty")
        return []
    parsed: list[dict[str, Any]] = []
    for position, entry in enumerate(grades, start=1):
        where = {"n": position, "grade": entry.get("grade", "?") if isinstance(entry, dict) else "?"}

        def add(message: str, code: str, where=where) -> None:
            errors.add("grades", _("第 %(n)s 个等级（%(grade)s）/ grade %(n)s (%(grade)s): ") % where + message, code)

        if not isinstance(entry, dict) or set(entry) != set(GRADE_KEYS):
            add(_("须有且只有 %(keys)s / needs exactly %(keys)s") % {"keys": ", ".join(GRADE_KEYS)}, "grade_keys")
            continue
        name = entry["grade"]
        if not isinstance(name, str) or not name.strip() or len(name) > 4:
            add(_("等级名称须为 1 到 4 个字符 / the grade name must be 1 to 4 characters"), "grade_name")
            continue
        row: dict[str, Any] = {"grade": name}
        for key, places in _GRADE_PLACES.items():
            row[key] = _decimal(entry[key], "grades", places, errors, label=f"{name}.{key}")
        if None in row.values():
            continue
        if not 0 < row["max_pd"] <= 1:
            add(_("违约概率上限须在 (0, 1] 内 / max_pd must be in (0, 1]"), "max_pd")
        if row["multiplier"] < 0:
            add(_("额度倍数不能为负 / the multiplier cannot be negative"), "multiplier")
        if not 0 < row["annual_rate"] <= ANNUAL_RATE_MAX:
            add(_("年利率须在 (0, 24%] 内 / the annual rate must be in (0, 24%]"), "annual_rate")
        if row["multiplier"] == 0 or row["cap"] == 0:
            if row["multiplier"] != 0 or row["cap"] != 0:
                # One way to say "no line", so the table cannot say it half.
                add(
                    _("不授信的等级倍数和上限都须为 0 / a grade without a line needs multiplier 0 and cap 0"), "no_line"
                )
        elif min_line is not None and max_line is not None and not min_line <= row["cap"] <= max_line:
            add(_("等级上限须在最低和最高额度之间 / the cap must lie between the minimum and maximum line"), "cap")
        parsed.append(row)

    names = [row["grade"] for row in parsed]
    if len(set(names)) != len(names):
        errors.add("grades", _("等级名称不能重复 / Grade names must be unique"), "grade_duplicate")
    for better, worse in pairwise(parsed):
        pair = f" ({better['grade']}, {worse['grade']})"
        if not better["max_pd"] < worse["max_pd"]:
            errors.add(
                "grades",
                _("等级须按违约概率上限递增排列 / Grades must be ordered by increasing max_pd") + pair,
                "grade_order",
            )
        # A riskier grade never gets a larger multiplier or cap, nor a lower rate: catches
        # a swapped row before it reaches a million farmers.
        if worse["multiplier"] > better["multiplier"] or worse["cap"] > better["cap"]:
            errors.add(
                "grades",
                _("风险更高的等级倍数和上限不能更大 / A riskier grade cannot have a larger multiplier or cap") + pair,
                "grade_monotonic",
            )
        if worse["annual_rate"] < better["annual_rate"]:
            errors.add(
                "grades",
                _("风险更高的等级利率不能更低 / A riskier grade cannot have a lower rate") + pair,
                "grade_monotonic",
            )
    if parsed and len(parsed) == len(grades) and parsed[-1]["max_pd"] != 1:
        errors.add(
            "grades",
            _("最后一个等级须兜底（违约概率上限为 1）/ The last grade must catch all (max_pd 1)"),
            "grade_catch_all",
        )
    return [{"grade": row["grade"], **{key: _text(row[key]) for key in GRADE_KEYS[1:]}} for row in parsed]


def _decimal(value: Any, field: str, places: int, errors: _Errors, *, label: str | None = None) -> Decimal | None:
    """A finite Decimal with at most ``places`` decimals (money quantised to fen). Floats are
    refused: money and rates are never binary fractions here."""
    shown = label or field
    if isinstance(value, bool) or isinstance(value, float) or not isinstance(value, Decimal | int | str):
        errors.add(
            field,
            _("%(field)s 须为十进制数（字符串或 Decimal）/ %(field)s must be a decimal (string or Decimal)")
            % {"field": shown},
            "decimal",
        )
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        errors.add(field, _("%(field)s 不是有效的数 / %(field)s is not a valid number") % {"field": shown}, "decimal")
        return None
    if number != number.quantize(Decimal(1).scaleb(-places)):
        errors.add(
            field,
            _("%(field)s 最多 %(places)s 位小数 / %(field)s allows at most %(places)s decimal places")
            % {"field": shown, "places": places},
            "decimal_places",
        )
        return None
    # One spelling per value ("0.8", not also "0.80"), so an edit that changes nothing records nothing.
    return number.quantize(_MONEY) if places == 2 else number.normalize()


def _integer(value: Any, field: str, errors: _Errors) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(field, _("%(field)s 须为整数 / %(field)s must be a whole number") % {"field": field}, "integer")
        return None
    return value
