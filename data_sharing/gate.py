"""The consent gate: the only way personal government data is read for credit purposes.

Two forms share one definition of "admitted":

* :func:`farmer_records` — one farmer (an official's look-up, a partner's single query);
* :func:`batch_gate` — the nightly batch: one set-based ``INSERT … SELECT`` into temporary
  tables the scorer reads.

Both are built from the SQL fragments below (:func:`_consent_admits_sql`, :func:`_gated_ctes`),
so they cannot disagree. A record is admitted for a lending partner, purpose and business date
D when

1. its category is active and named by a data-sharing agreement with that partner effective on
   D (a requested category outside every such agreement is an error, never a silent omission);
2. the farmer has a consent for that partner and purpose whose **current** status is ACTIVE (a
   revocation or pause is honoured at once, even when an old date is rerun), which has started
   by the end of D and has not expired by then (D ends at 00:00 of D + 1, Asia/Shanghai), and
   whose text is the newest version for its purpose (publishing a new text shuts the gate until
   the farmer consents again);
3. the consent names the category — except for categories that need no consent (the court's
   public dishonest-debtor list), which are admitted for every farmer admitted under (2): the
   batch scores consenting farmers only, so no one else's name is read even from a public list;
4. it is, per (farmer, category, record key), the newest version with ``as_of_date <= D``.

Every read writes one :class:`~data_sharing.models.AccessLog` row (append-only).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from counties.models import Farmer, Official
from data_sharing.models import AccessLog, ConsentText
from platform.models import LendingPartner

GATED_RECORDS = "gated_records"
GATED_FARMERS = "gated_farmers"


class OutsideAgreementError(PermissionDenied):
    """A read asked for categories no active agreement with the partner covers."""

    def __init__(self, categories: list[str]):
        self.categories = categories
        names = ", ".join(categories)
        super().__init__(
            _("数据类别 %(names)s 不在与该贷款机构有效的数据共享协议内，不能读取 / "
              "Categories %(names)s are not covered by an active data-sharing agreement with this lending partner")
            % {"names": names}
        )


@dataclass(frozen=True)
class GateResult:
    access_log_id: int
    business_date: dt.date
    categories: list[str]
    farmer_count: int
    record_count: int
    records_by_category: dict[str, int]


# --- The one definition, as SQL fragments -----------------------------------------------------
# Parameters are named (%(name)s); every statement built from these passes ``tz``.


def day_end_sql(date_sql: str) -> str:
    """The instant business day ``date_sql`` ends: 00:00 of the next day in the county's zone."""
    return f"((({date_sql})::date + 1)::timestamp AT TIME ZONE %(tz)s)"


def _consent_admits_sql(*, moment: str, status_as_of: str | None = None) -> str:
    """Condition on consent row ``c``: it lets data flow at ``moment`` (a SQL timestamptz).

    With ``status_as_of`` (a SQL timestamptz) the status and the newest text are taken as they
    stood at that instant — the status from the append-only event history, the text among
    versions published by then — which is how an earlier batch's admissions are reconstructed.
    """
    if status_as_of is None:
        status = "c.status"
        text_published = ""
    else:
        status = f"""(SELECT e.to_status FROM data_sharing_consentevent e
                       WHERE e.consent_id = c.id AND e.at <= {status_as_of}
                       ORDER BY e.at DESC, e.id DESC LIMIT 1)"""
        text_published = f"AND t.published_at <= {status_as_of}"
    return f"""
        {status} = 'active'
        AND c.starts_at < {moment} AND c.expires_at >= {moment}
        AND c.text_id = (SELECT t.id FROM data_sharing_consenttext t
                          WHERE t.purpose_code = c.purpose_code {text_published}
                          ORDER BY t.version DESC LIMIT 1)
    """


_AGREED_CATEGORY_IDS_SQL = """
    SELECT ac.datacategory_id
      FROM data_sharing_datasharingagreement_categories ac
      JOIN data_sharing_datasharingagreement a ON a.id = ac.datasharingagreement_id
     WHERE a.partner_id = %(partner_id)s
       AND a.effective_from <= %(business_date)s AND a.effective_to >= %(business_date)s
"""


def _gated_ctes(*, single_farmer: bool, farmer_range: bool = False) -> str:
    """``WITH`` clauses: admitted_consents (consent_id, farmer_id, categories),
    admitted_categories (farmer_id, category_id, category_code) and gated (the records).

    ``farmer_range`` restricts both to farmer ids between ``%(first_farmer_id)s`` and
    ``%(last_farmer_id)s`` (a chunk of the nightly batch). The range is repeated on the records
    because PostgreSQL does not carry a range through a join: without it, every chunk would
    read the whole county's records."""
    farmer_filter = "AND c.farmer_id = %(farmer_id)s" if single_farmer else ""
    record_filter = ""
    if farmer_range:
        farmer_filter += " AND c.farmer_id BETWEEN %(first_farmer_id)s AND %(last_farmer_id)s"
        record_filter = "AND r.farmer_id BETWEEN %(first_farmer_id)s AND %(last_farmer_id)s"
    return f"""
    WITH admitted_consents AS (
        SELECT c.id AS consent_id, c.farmer_id, c.categories
          FROM data_sharing_consent c
         WHERE c.partner_id = %(partner_id)s AND c.purpose_code = %(purpose)s {farmer_filter}
           AND {_consent_admits_sql(moment=day_end_sql("%(business_date)s"))}
    ),
    admitted_categories AS (
        SELECT ac.farmer_id, dc.id AS category_id, dc.code AS category_code
          FROM admitted_consents ac
          JOIN data_sharing_datacategory dc
            ON dc.code = ANY(%(categories)s)
           AND dc.is_active
           AND dc.id IN ({_AGREED_CATEGORY_IDS_SQL})
           AND (dc.code = ANY(ac.categories) OR NOT dc.requires_consent)
    ),
    gated AS (
        SELECT DISTINCT ON (r.farmer_id, r.category_id, r.record_key)
               r.farmer_id, ad.category_code, r.record_key, r.as_of_date, r.data
          FROM admitted_categories ad
          JOIN data_sharing_governmentrecord r
            ON r.farmer_id = ad.farmer_id AND r.category_id = ad.category_id
         WHERE r.as_of_date <= %(business_date)s {record_filter}
         ORDER BY r.farmer_id, r.category_id, r.record_key, r.as_of_date DESC
    )
    """


def _params(**values) -> dict:
    return {"tz": settings.TIME_ZONE, **values}


def agreed_category_codes(*, partner: LendingPartner, on: dt.date, codes: Iterable[str]) -> set[str]:
    """Which of ``codes`` may leave the county for ``partner`` on ``on``: active categories named
    by an agreement effective that day (an inactive partner has none)."""
    codes = sorted(set(codes))
    if not codes or not partner.is_active:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT dc.code FROM data_sharing_datacategory dc
                 WHERE dc.code = ANY(%(categories)s) AND dc.is_active
                   AND dc.id IN ({_AGREED_CATEGORY_IDS_SQL})""",
            _params(categories=codes, partner_id=partner.pk, business_date=on),
        )
        return {code for (code,) in cursor.fetchall()}


def _checked_request(*, partner: LendingPartner, categories: Iterable[str], business_date: dt.date, purpose: str) -> list[str]:
    requested = sorted(set(categories))
    if not requested:
        raise ValueError("the gate needs at least one category")
    if not ConsentText.objects.filter(purpose_code=purpose).exists():
        raise ValueError(f"unknown consent purpose {purpose!r}")
    outside = sorted(set(requested) - agreed_category_codes(partner=partner, on=business_date, codes=requested))
    if outside:
        raise OutsideAgreementError(outside)
    return requested


def _access_log_write(
    *,
    at: dt.datetime,
    accessor_type: str,
    accessor: str,
    partner: LendingPartner,
    farmer: Farmer | None,
    farmer_count: int,
    categories: list[str],
    purpose: str,
    business_date: dt.date,
) -> int:
    # Raw INSERT because ``AccessLog.at`` is auto_now_add: the row must carry the instant taken
    # *before* the read, which is what reconstructing a batch's admissions compares the
    # consent events against (see farmer_access_history).
    if accessor_type not in AccessLog.Accessor.values:
        raise ValueError(f"unknown accessor type {accessor_type!r}")
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO data_sharing_accesslog
                   (at, accessor_type, accessor, partner_id, farmer_id, farmer_count, categories, purpose, business_date)
               VALUES (%(at)s, %(accessor_type)s, %(accessor)s, %(partner_id)s, %(farmer_id)s, %(farmer_count)s,
                       %(categories)s, %(purpose)s, %(business_date)s)
               RETURNING id""",
            {
                "at": at, "accessor_type": accessor_type, "accessor": accessor[:150], "partner_id": partner.pk,
                "farmer_id": farmer.pk if farmer else None, "farmer_count": farmer_count,
                "categories": categories, "purpose": purpose[:200], "business_date": business_date,
            },
        )
        return cursor.fetchone()[0]


# --- (1) One farmer ----------------------------------------------------------------------------


def farmer_records(
    *,
    farmer: Farmer,
    partner: LendingPartner,
    categories: Iterable[str],
    business_date: dt.date,
    accessor_type: str,
    accessor: str,
    purpose: str,
) -> dict[str, list[dict]]:
    """The farmer's admitted records as of ``business_date``, by category.

    Keys are exactly the admitted categories (a category the consent does not cover is absent;
    an admitted one with no records maps to ``[]``); each record is
    ``{"record_key", "as_of_date", "data"}``, ordered by record key. Writes one access-log row
    naming the farmer (``farmer_count`` 1 if admitted, else 0 — a refused attempt is logged too).
    """
    requested = _checked_request(partner=partner, categories=categories, business_date=business_date, purpose=purpose)
    accessed_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _gated_ctes(single_farmer=True)
            + """
            SELECT ad.category_code, g.record_key, g.as_of_date, g.data
              FROM admitted_categories ad
              LEFT JOIN gated g ON g.farmer_id = ad.farmer_id AND g.category_code = ad.category_code
             ORDER BY ad.category_code, g.record_key
            """,
            _params(
                partner_id=partner.pk, purpose=purpose, farmer_id=farmer.pk,
                business_date=business_date, categories=requested,
            ),
        )
        rows = cursor.fetchall()
    records: dict[str, list[dict]] = {}
    for category_code, record_key, as_of_date, data in rows:
        bucket = records.setdefault(category_code, [])
        if record_key is not None:
            bucket.append({"record_key": record_key, "as_of_date": as_of_date, "data": json.loads(data)})
    _access_log_write(
        at=accessed_at, accessor_type=accessor_type, accessor=accessor, partner=partner, farmer=farmer,
        farmer_count=1 if records else 0, categories=sorted(records), purpose=purpose, business_date=business_date,
    )
    return records


# --- (2) The nightly batch ---------------------------------------------------------------------


def batch_gate(
    *,
    partner: LendingPartner,
    categories: Iterable[str],
    business_date: dt.date,
    job: str,
    purpose: str,
    farmer_ids: tuple[int, int] | None = None,
) -> GateResult:
    """Fill the temporary tables the scorer reads, for ``partner`` and ``business_date``:

    * ``gated_farmers(farmer_id)`` — every farmer admitted under a consent (the population to
      score, including farmers with no records at all);
    * ``gated_records(farmer_id, category_code, record_key, as_of_date, data jsonb)`` — the
      admitted records, newest version per record key.

    Both are filled by one statement (one snapshot: a revocation committing meanwhile cannot
    leave a farmer in one table and not the other). They are ``ON COMMIT DROP``, so call this
    inside ``transaction.atomic``; a second call in the same transaction replaces them. Writes
    one access-log row for the job with the number of farmers admitted.

    ``farmer_ids`` (first, last), inclusive, gates only the farmers with ids in that range —
    one chunk of a county — under the same definition of "admitted".
    """
    if not connection.in_atomic_block:
        raise RuntimeError("batch_gate must run inside transaction.atomic (its tables drop on commit)")
    requested = _checked_request(partner=partner, categories=categories, business_date=business_date, purpose=purpose)
    accessed_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{GATED_RECORDS}")
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{GATED_FARMERS}")
        cursor.execute(f"CREATE TEMP TABLE {GATED_FARMERS} (farmer_id bigint PRIMARY KEY) ON COMMIT DROP")
        cursor.execute(
            f"""CREATE TEMP TABLE {GATED_RECORDS} (
                    farmer_id bigint NOT NULL,
                    category_code varchar(48) NOT NULL,
                    record_key varchar(128) NOT NULL,
                    as_of_date date NOT NULL,
                    data jsonb NOT NULL,
                    PRIMARY KEY (farmer_id, category_code, record_key)
                ) ON COMMIT DROP"""
        )
        first_farmer_id, last_farmer_id = farmer_ids or (None, None)
        cursor.execute(
            _gated_ctes(single_farmer=False, farmer_range=farmer_ids is not None)
            + f""",
            population AS (
                INSERT INTO {GATED_FARMERS} (farmer_id) SELECT DISTINCT farmer_id FROM admitted_consents
            )
            INSERT INTO {GATED_RECORDS} (farmer_id, category_code, record_key, as_of_date, data)
            SELECT farmer_id, category_code, record_key, as_of_date, data FROM gated
            """,
            _params(
                partner_id=partner.pk, purpose=purpose, business_date=business_date, categories=requested,
                first_farmer_id=first_farmer_id, last_farmer_id=last_farmer_id,
            ),
        )
        record_count = cursor.rowcount
        # Temporary tables are never auto-analysed; without statistics the scorer's joins over a
        # county's million rows get nested-loop plans.
        cursor.execute(f"ANALYZE {GATED_FARMERS}")
        cursor.execute(f"ANALYZE {GATED_RECORDS}")
        cursor.execute(f"SELECT count(*) FROM {GATED_FARMERS}")
        farmer_count = cursor.fetchone()[0]
        cursor.execute(f"SELECT category_code, count(*) FROM {GATED_RECORDS} GROUP BY category_code")
        by_category = {code: 0 for code in requested} | dict(cursor.fetchall())
    log_id = _access_log_write(
        at=accessed_at, accessor_type=AccessLog.Accessor.JOB, accessor=job, partner=partner, farmer=None,
        farmer_count=farmer_count, categories=requested, purpose=purpose, business_date=business_date,
    )
    return GateResult(
        access_log_id=log_id, business_date=business_date, categories=requested,
        farmer_count=farmer_count, record_count=record_count, records_by_category=by_category,
    )


# --- Consent in force at an instant (drawdowns) ---------------------------------------------


def consent_in_force(*, farmer: Farmer, partner: LendingPartner, purpose: str, at: dt.datetime | None = None) -> bool:
    """Whether the farmer's consent to ``partner`` for ``purpose`` lets data flow at ``at``
    (default now) — the same rule as the gate, at an instant instead of a day's end. A credit
    line accepts new drawdowns only while this holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT EXISTS (
                    SELECT 1 FROM data_sharing_consent c
                     WHERE c.farmer_id = %(farmer_id)s AND c.partner_id = %(partner_id)s
                       AND c.purpose_code = %(purpose)s
                       AND {_consent_admits_sql(moment="%(at)s")})""",
            _params(farmer_id=farmer.pk, partner_id=partner.pk, purpose=purpose, at=at or timezone.now()),
        )
        return cursor.fetchone()[0]


# --- (3) The farmer's own view -----------------------------------------------------------------


def farmer_access_history(*, farmer: Farmer) -> list[dict]:
    """Every access to the farmer's data, newest first.

    * Direct reads are access-log rows naming the farmer (``kind`` "direct").
    * A nightly batch logs one row per job without naming farmers. The farmer was in it when
      the gate admitted them — and the gate admitted exactly the farmers whose consent to that
      partner and purpose was ACTIVE at the moment of the read, covered the batch's business
      date and was on the newest text. Consent status changes are append-only events stamped
      with their time, so that is recomputed here: a consent counts for a batch row logged at
      ``at`` for date D if its last event at or before ``at`` left it ``active``, it started
      before D ended and had not expired by then, and its text was the newest version published
      by ``at`` (``kind`` "batch"; ``categories`` are the logged ones the consent covered, plus
      those needing no consent). The log's ``at`` is taken just before the read, so a change
      recorded after it cannot hide a read that happened; a change racing the read by the few
      milliseconds between its timestamp and its commit is the only blur.
    """
    admits_then = _consent_admits_sql(moment=day_end_sql("l.business_date"), status_as_of="l.at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT l.id, l.at, 'direct' AS kind, l.accessor_type, l.accessor,
                   p.code AS partner_code, p.name AS partner_name, l.categories, l.purpose, l.business_date
              FROM data_sharing_accesslog l
              LEFT JOIN platform_lendingpartner p ON p.id = l.partner_id
             WHERE l.farmer_id = %(farmer_id)s
            UNION ALL
            SELECT l.id, l.at, 'batch', l.accessor_type, l.accessor, p.code, p.name,
                   ARRAY(SELECT code FROM unnest(l.categories) AS code
                          WHERE code = ANY(adm.categories)
                             OR code IN (SELECT dc.code FROM data_sharing_datacategory dc WHERE NOT dc.requires_consent)
                          ORDER BY code),
                   l.purpose, l.business_date
              FROM data_sharing_accesslog l
              LEFT JOIN platform_lendingpartner p ON p.id = l.partner_id
              JOIN LATERAL (
                    SELECT c.categories FROM data_sharing_consent c
                     WHERE c.farmer_id = %(farmer_id)s AND c.partner_id = l.partner_id
                       AND c.purpose_code = l.purpose AND {admits_then}
                     LIMIT 1
                   ) adm ON true
             WHERE l.farmer_id IS NULL AND l.accessor_type = 'job' AND l.business_date IS NOT NULL
             ORDER BY at DESC, id DESC
            """,
            _params(farmer_id=farmer.pk),
        )
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


# --- (4) The auditor's view --------------------------------------------------------------------

ACCESS_LOG_VIEWER_ROLES = frozenset({Official.Role.AUDITOR, Official.Role.COUNTY_ADMIN})


def access_log_all(
    *,
    viewer,
    accessor_type: str | None = None,
    partner: LendingPartner | None = None,
    farmer: Farmer | None = None,
    category: str | None = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    page: int = 1,
    page_size: int = 50,
) -> Page:
    """Every access-log row of the county, for an auditor or the county administrator; filters
    combine, newest first; with the official's look-up (purpose and note) where the read came
    from the portal.

    ``viewer`` is the requesting user; anyone but an official with one of those roles is refused.
    """
    if getattr(getattr(viewer, "official", None), "role", None) not in ACCESS_LOG_VIEWER_ROLES:
        raise PermissionDenied(
            _("只有审计员和县级管理员可以查看全部访问记录 / Only an auditor or the county administrator can see the full access log")
        )
    rows = AccessLog.objects.select_related("partner", "farmer", "lookup").order_by("-at", "-id")
    if accessor_type:
        rows = rows.filter(accessor_type=accessor_type)
    if partner is not None:
        rows = rows.filter(partner=partner)
    if farmer is not None:
        rows = rows.filter(farmer=farmer)
    if category:
        rows = rows.filter(categories__contains=[category])
    if date_from:
        rows = rows.filter(at__date__gte=date_from)
    if date_to:
        rows = rows.filter(at__date__lte=date_to)
    return Paginator(rows, min(max(page_size, 1), 500)).get_page(page)

