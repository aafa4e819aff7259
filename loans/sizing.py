"""Line sizing: PD → grade → line amount, vectorised over a chunk of farmers and exact in fen.

The policy's rule (DESIGN.md, "Line sizing"):

    income proxy = base_income + income_per_mu × operated area (mu)
    capacity     = income proxy × the grade's multiplier
    line         = min(capacity, grade cap, max_line), rounded DOWN to rounding_unit,
                   at least min_line, and never below the farmer's outstanding principal.

A grade whose multiplier is 0 (or a PD above every grade's max_pd) grants no line.

Every amount here is an ``int64`` count of fen and every comparison is between integers, so a
capacity of exactly 12,300.00 yuan stays 12,300.00 instead of becoming 12,299.999… in binary
floating point and losing a whole rounding unit. Area enters as hundredths of a mu (the
catalog's two places), multipliers as integers over 10^4 (the policy allows four places), PDs
as millionths (the six places an assessment stores). :func:`fen_to_decimal` turns a result into
the ``Decimal`` yuan the models store.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

import numpy as np

NO_LINE = -1
NO_GRADE = -1
PD_SCALE = 10**6  # PDs are stored with 6 places
MULTIPLIER_SCALE = 10**4  # the policy allows 4 places on a multiplier
FEN = Decimal("0.01")
# Hundredths of a mu above which every line is at its cap anyway (10^8 mu, beyond any county);
# keeps income × multiplier inside int64.
_AREA_CENTIMU_CEILING = 10**10


@dataclass(frozen=True)
class Grade:
    code: str
    max_pd: Decimal
    multiplier: Decimal
    cap: Decimal
    annual_rate: Decimal


@dataclass(frozen=True)
class SizingPolicy:
    """The numbers of a :class:`~loans.models.CreditPolicy` that sizing needs, as Decimals."""

    grades: tuple[Grade, ...]
    min_line: Decimal
    max_line: Decimal
    rounding_unit: Decimal
    base_income: Decimal
    income_per_mu: Decimal

    @classmethod
    def of(cls, policy) -> SizingPolicy:
        grades = tuple(
            Grade(
                code=str(row["grade"]),
                max_pd=Decimal(str(row["max_pd"])),
                multiplier=Decimal(str(row["multiplier"])),
                cap=Decimal(str(row["cap"])),
                annual_rate=Decimal(str(row["annual_rate"])),
            )
            for row in policy.grades
        )
        sizing = cls(
            grades=grades,
            min_line=Decimal(policy.min_line),
            max_line=Decimal(policy.max_line),
            rounding_unit=Decimal(policy.rounding_unit),
            base_income=Decimal(policy.base_income),
            income_per_mu=Decimal(policy.income_per_mu),
        )
        sizing.check()
        return sizing

    def check(self) -> None:
        """The assumptions the integer arithmetic rests on (the policy service validates the
        same and more when an official saves a policy)."""
        if not self.grades:
            raise ValueError("a policy needs at least one grade")
        bounds = [_scaled(g.max_pd, PD_SCALE, "max_pd") for g in self.grades]
        if any(later < earlier for earlier, later in pairwise(bounds)):
            raise ValueError("grades must be listed best first, with non-decreasing max_pd")
        for grade in self.grades:
            if not 0 <= grade.multiplier <= 100:
                raise ValueError(f"grade {grade.code}: multiplier out of range")
            _scaled(grade.multiplier, MULTIPLIER_SCALE, "multiplier")
            _fen(grade.cap)
        if self.rounding_unit <= 0:
            raise ValueError("the rounding unit must be positive")
        if not 0 <= self.income_per_mu <= 10**6 or not 0 <= self.base_income <= 10**9:
            raise ValueError("income parameters out of range")
        for value in (self.min_line, self.max_line, self.rounding_unit, self.base_income, self.income_per_mu):
            _fen(value)

    @property
    def grade_codes(self) -> list[str]:
        return [grade.code for grade in self.grades]

    @property
    def annual_rates(self) -> list[Decimal]:
        return [grade.annual_rate for grade in self.grades]


def _scaled(value: Decimal, scale: int, name: str) -> int:
    scaled = value * scale
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{name} {value} has more decimal places than {len(str(scale)) - 1}")
    return int(scaled)


def _fen(value: Decimal) -> int:
    return _scaled(value, 100, "amount")


def pd_millionths(pd: np.ndarray) -> np.ndarray:
    """PD rounded to the 6 places an assessment stores, as integer millionths."""
    return np.rint(np.asarray(pd, dtype=float) * PD_SCALE).astype(np.int64)


def grade_index(policy: SizingPolicy, pd_micro: np.ndarray) -> np.ndarray:
    """Index into ``policy.grades`` of the first grade whose max_pd ≥ the PD (given in
    millionths, as stored), or :data:`NO_GRADE` when the PD exceeds them all."""
    bounds = np.asarray([_scaled(g.max_pd, PD_SCALE, "max_pd") for g in policy.grades], dtype=np.int64)
    index = np.searchsorted(bounds, np.asarray(pd_micro, dtype=np.int64), side="left")
    return np.where(index < len(bounds), index, NO_GRADE).astype(np.int64)


def area_centimu(area_mu: np.ndarray) -> np.ndarray:
    """Operated area in hundredths of a mu (exact for the catalog's 2-place areas); a missing
    or negative area counts as none."""
    area = np.nan_to_num(np.asarray(area_mu, dtype=float), nan=0.0)
    return np.clip(np.rint(area * 100), 0, _AREA_CENTIMU_CEILING).astype(np.int64)


def line_fen(
    policy: SizingPolicy,
    *,
    grade: np.ndarray,
    area_cmu: np.ndarray,
    outstanding_fen: np.ndarray,
) -> np.ndarray:
    """Each farmer's line in fen, or :data:`NO_LINE` where the grade grants none.

    Units inside: income in 10^-4 yuan (fen × 100, so that income_per_mu in fen times area in
    hundredths of a mu is an integer) and capacity additionally × 10^4 for the multiplier's
    places; caps and the rounding unit are scaled the same way before comparing.
    """
    grade = np.asarray(grade, dtype=np.int64)
    area_cmu = np.asarray(area_cmu, dtype=np.int64)
    outstanding_fen = np.asarray(outstanding_fen, dtype=np.int64)
    scale = 100 * MULTIPLIER_SCALE  # fen → capacity units
    multipliers = np.asarray([_scaled(g.multiplier, MULTIPLIER_SCALE, "multiplier") for g in policy.grades] + [0], dtype=np.int64)
    caps = np.asarray([_fen(g.cap) for g in policy.grades] + [0], dtype=np.int64)
    multiplier = multipliers[grade]  # NO_GRADE (−1) picks the trailing 0
    max_scaled = _fen(policy.max_line) * scale

    income = _fen(policy.base_income) * 100 + _fen(policy.income_per_mu) * area_cmu
    # Beyond max_line / multiplier the capacity is above every cap: clamping the income there
    # changes no result and keeps income × multiplier far inside int64.
    saturation = -(-max_scaled // np.maximum(multiplier, 1)) + 1
    capacity = np.minimum(income, saturation) * multiplier
    bound = np.minimum(np.minimum(capacity, caps[grade] * scale), max_scaled)
    unit_fen = _fen(policy.rounding_unit)
    line = (bound // (unit_fen * scale)) * unit_fen
    line = np.maximum(line, _fen(policy.min_line))
    # A lower line never goes below what the farmer already owes.
    line = np.maximum(line, outstanding_fen)
    return np.where(multiplier > 0, line, NO_LINE)


def fen_to_decimal(fen: int) -> Decimal:
    """Yuan with 2 places."""
    return (Decimal(int(fen)) / 100).quantize(FEN)
