"""Credit features of the gated farmers, in one set-based read, into numpy.

The caller has run :func:`data_sharing.gate.batch_gate` in the current transaction, so the
temporary tables ``gated_farmers`` and ``gated_records`` hold the farmers admitted under a
consent and their admitted records, newest version per record as of the business date D. One
SQL statement turns them (with the farmer's birth date and the platform's own loan history)
into one row per gated farmer and :func:`feature_columns` returns them as float arrays, the
ids ascending. The rows travel as binary COPY of fixed-width values, so a million of them are
read with one ``numpy.frombuffer`` — no Python object per farmer.

What each feature means as of D:

* ``operated_area_mu`` — land contracts (term not ended before D) + land rented in − land
  rented out (transfers running on D: started by D, start + term months after D), at least 0;
* ``insured_share`` — insured area / operated area, at most 1, from this year's or last year's
  policies (whichever insured more: this year's may not be written yet); 0 without land;
* ``subsidy_yuan`` — agricultural subsidies of this year or last year, whichever is larger
  (this year's may still be partly unpaid);
* ``social_insurance_years`` — the longest contribution record of any scheme;
* ``organized`` — 1 for a registered family farm, cooperative or agri-business (registered by
  D) or a cooperative membership (joined by D), else 0;
* ``poverty_monitored`` — 1 under poverty-relapse monitoring (防返贫监测, since a year ≤ D's),
  else 0 (a household lifted out of poverty and not monitored is 0);
* ``repaid_loans`` — platform loans closed by D with no day past due;
* ``max_days_past_due`` — the longest delay on platform loans closed by D;
* ``age`` — completed years on D.

A farmer with no admitted record of a category (absent from the department's register, or not
sharing that category) reads as 0 / "not": that is how the default scorecard was trained
(``loans/default_scorecard_build.py``) and how a retrained one will see the county.
``exclude_outcomes_after`` drops loans closed after that date from the repayment history (the
training sample's observation point). A value that cannot be computed is NULL in SQL and NaN here.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from django.db import connection

from data_sharing.gate import GATED_FARMERS, GATED_RECORDS
from loans.scorecard import FEATURE_NAMES

# Categories the features are computed from, and the one eligibility reads (the court's list).
FEATURE_CATEGORIES: tuple[str, ...] = (
    "land_contract", "land_transfer", "agri_insurance", "agri_subsidy", "social_insurance",
    "business_entity", "coop_membership", "poverty_monitoring",
)
ELIGIBILITY_CATEGORIES: tuple[str, ...] = ("dishonest_debtor",)

# Columns besides the features that the nightly batch reads in the same statement: whether the
# court lists the farmer on D, and the farmer's current line (−1 fen / 0 when there is none).
EXTRA_COLUMNS: tuple[str, ...] = (
    "dishonest_listed", "line_exists", "line_amount_fen", "outstanding_fen", "line_active", "overdue",
)

_PER_FARMER_RECORDS = f"""
    SELECT r.farmer_id,
           sum((r.data->>'area_mu')::numeric) FILTER (
               WHERE r.category_code = 'land_contract'
                 AND ((r.data->>'term_end') IS NULL OR (r.data->>'term_end')::date >= %(d)s)) AS own_mu,
           sum(CASE r.data->>'direction' WHEN 'in' THEN 1 ELSE -1 END * (r.data->>'area_mu')::numeric) FILTER (
               WHERE r.category_code = 'land_transfer'
                 AND (r.data->>'start_date')::date <= %(d)s
                 AND (r.data->>'start_date')::date
                     + make_interval(months => (r.data->>'term_months')::int) > %(d)s) AS transferred_mu,
           sum((r.data->>'insured_area_mu')::numeric) FILTER (
               WHERE r.category_code = 'agri_insurance' AND (r.data->>'year')::int = %(year)s) AS insured_this,
           sum((r.data->>'insured_area_mu')::numeric) FILTER (
               WHERE r.category_code = 'agri_insurance' AND (r.data->>'year')::int = %(year)s - 1) AS insured_last,
           sum((r.data->>'amount_yuan')::numeric) FILTER (
               WHERE r.category_code = 'agri_subsidy' AND (r.data->>'year')::int = %(year)s) AS subsidy_this,
           sum((r.data->>'amount_yuan')::numeric) FILTER (
               WHERE r.category_code = 'agri_subsidy' AND (r.data->>'year')::int = %(year)s - 1) AS subsidy_last,
           max((r.data->>'contribution_years')::int) FILTER (
               WHERE r.category_code = 'social_insurance') AS social_years,
           bool_or((r.category_code = 'business_entity' AND (r.data->>'registered_on')::date <= %(d)s)
                   OR (r.category_code = 'coop_membership' AND (r.data->>'joined_on')::date <= %(d)s)) AS organized,
           bool_or(r.category_code = 'poverty_monitoring' AND r.data->>'status' = 'monitored'
                   AND (r.data->>'since_year')::int <= %(year)s) AS poverty_monitored,
           bool_or(r.category_code = 'dishonest_debtor' AND (r.data->>'listed_on')::date <= %(d)s
                   AND ((r.data->>'removed_on') IS NULL OR (r.data->>'removed_on')::date > %(d)s)) AS dishonest
      FROM {GATED_RECORDS} r
     GROUP BY r.farmer_id
"""

# The gated farmers' id range, so that every index read below starts where the chunk starts
# instead of merging from the first farmer of the county.
_LOW = f"(SELECT min(farmer_id) FROM {GATED_FARMERS})"
_HIGH = f"(SELECT max(farmer_id) FROM {GATED_FARMERS})"

_HISTORY = f"""
    SELECT o.farmer_id,
           count(*) FILTER (WHERE o.max_days_past_due = 0) AS repaid,
           max(o.max_days_past_due) AS max_dpd
      FROM loans_creditoutcome o
      JOIN {GATED_FARMERS} g ON g.farmer_id = o.farmer_id
     WHERE o.closed_on <= %(history_cutoff)s AND o.farmer_id BETWEEN {_LOW} AND {_HIGH}
     GROUP BY o.farmer_id
"""

# Operated area as a NUMERIC expression: exact sums of 2-place decimals before any float.
_AREA = "GREATEST(COALESCE(rec.own_mu, 0) + COALESCE(rec.transferred_mu, 0), 0)"

_FEATURE_SQL = {
    "operated_area_mu": _AREA,
    "insured_share": f"""CASE WHEN {_AREA} > 0
        THEN round(LEAST(GREATEST(COALESCE(rec.insured_this, 0), COALESCE(rec.insured_last, 0)) / {_AREA}, 1), 4)
        ELSE 0 END""",
    "subsidy_yuan": "GREATEST(COALESCE(rec.subsidy_this, 0), COALESCE(rec.subsidy_last, 0))",
    "social_insurance_years": "COALESCE(rec.social_years, 0)",
    "organized": "COALESCE(rec.organized, false)::int",
    "poverty_monitored": "COALESCE(rec.poverty_monitored, false)::int",
    "repaid_loans": "COALESCE(h.repaid, 0)",
    "max_days_past_due": "COALESCE(h.max_dpd, 0)",
    "age": "date_part('year', age(%(d)s::timestamp, f.birth_date::timestamp))",
}
_EXTRA_SQL = {
    "dishonest_listed": "COALESCE(rec.dishonest, false)::int",
    "line_exists": "(l.id IS NOT NULL)::int",
    "line_amount_fen": "COALESCE(l.amount * 100, -1)",
    "outstanding_fen": "COALESCE(l.outstanding_principal * 100, 0)",
    "line_active": "COALESCE(l.status = 'active', false)::int",
    "overdue": "COALESCE(l.suspension = 'overdue', false)::int",
}
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00"


def feature_columns(
    *, business_date: dt.date, exclude_outcomes_after: dt.date | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(farmer ids ascending as int64, {feature name: float64 array aligned with the ids}) for
    every farmer in ``gated_farmers``; see the module docstring for each feature."""
    farmer_ids, columns = _gated_columns(
        business_date=business_date, exclude_outcomes_after=exclude_outcomes_after, names=FEATURE_NAMES
    )
    return farmer_ids, columns


def assessment_inputs(*, business_date: dt.date) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The features plus :data:`EXTRA_COLUMNS` (the court's list, the current line), in the
    same single read: what the nightly batch scores and sizes a chunk from."""
    return _gated_columns(business_date=business_date, exclude_outcomes_after=None, names=FEATURE_NAMES + EXTRA_COLUMNS)


def _gated_columns(
    *, business_date: dt.date, exclude_outcomes_after: dt.date | None, names: tuple[str, ...]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    expressions = {**_FEATURE_SQL, **_EXTRA_SQL}
    # NaN, not NULL, so that every value on the wire is 8 bytes and a row has a fixed width.
    selected = ",\n".join(f"COALESCE(({expressions[name]})::float8, 'NaN')" for name in names)
    line_join = (
        f"LEFT JOIN loans_creditline l ON l.farmer_id = g.farmer_id AND l.farmer_id BETWEEN {_LOW} AND {_HIGH}"
        if set(names) & set(_EXTRA_SQL) else ""
    )
    history_cutoff = business_date if exclude_outcomes_after is None else min(business_date, exclude_outcomes_after)
    sql = f"""
        COPY (
            WITH rec AS ({_PER_FARMER_RECORDS}), h AS ({_HISTORY})
            SELECT g.farmer_id::int8,
                   {selected}
              FROM {GATED_FARMERS} g
              JOIN counties_farmer f ON f.id = g.farmer_id AND f.id BETWEEN {_LOW} AND {_HIGH}
              LEFT JOIN rec ON rec.farmer_id = g.farmer_id
              LEFT JOIN h ON h.farmer_id = g.farmer_id
              {line_join}
             ORDER BY g.farmer_id
        ) TO STDOUT (FORMAT binary)
    """
    params = {"d": business_date, "year": business_date.year, "history_cutoff": history_cutoff}
    with connection.cursor() as cursor:
        # psycopg's COPY wants the parameters merged client-side: COPY takes no bind parameters.
        statement = cursor.cursor.mogrify(sql, params)
        buffer = bytearray()
        with cursor.cursor.copy(statement) as copy:
            for block in copy:
                buffer += block
    return _parse_binary(bytes(buffer), names)


def _parse_binary(data: bytes, names: tuple[str, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows of (int8 id, float8 × len(names)), none NULL, from PostgreSQL's binary COPY format:
    a 19-byte header, per row an int16 field count then per field an int32 length and the
    big-endian value, and an int16 −1 trailer."""
    if not data.startswith(_BINARY_HEADER):
        raise ValueError("not a PostgreSQL binary COPY stream")
    extension = int.from_bytes(data[15:19], "big")
    body = data[19 + extension : -2]
    fields = [("count", ">i2"), ("id_length", ">i4"), ("farmer_id", ">i8")]
    for index in range(len(names)):
        fields += [(f"length{index}", ">i4"), (f"value{index}", ">f8")]
    rows = np.frombuffer(body, dtype=np.dtype(fields))
    if len(rows) and (
        np.any(rows["count"] != len(names) + 1)
        or np.any(rows["id_length"] != 8)
        or any(np.any(rows[f"length{index}"] != 8) for index in range(len(names)))
    ):
        raise ValueError("unexpected row layout in the binary COPY stream")
    farmer_ids = rows["farmer_id"].astype(np.int64)
    return farmer_ids, {name: rows[f"value{index}"].astype(np.float64) for index, name in enumerate(names)}
