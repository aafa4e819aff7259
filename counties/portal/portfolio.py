"""The nightly snapshot behind the dashboard's history: credit and loan figures per township
for the business date, in one set-based upsert (a step of ``settings.NIGHTLY_STEPS``, after the
credit lines are assessed and loans closed, so it sees the night's lines and classifications)."""

from __future__ import annotations

import datetime as dt

from django.db import connection

from counties.models import PortfolioDailyStat
from counties.selectors import NPL_CLASSIFICATIONS

# One row per township; villages without farmers or townships without loans give zeros. The
# definitions are those of counties.selectors.Figures (the live dashboard).
_SNAPSHOT_SQL = """
INSERT INTO counties_portfoliodailystat
       (business_date, township_id, consented_farmers, lined_farmers, lines_amount, lines_used,
        loans, loan_balance, overdue_balance, npl_balance)
SELECT %(day)s, t.id,
       coalesce(c.farmers, 0), coalesce(l.farmers, 0), coalesce(l.amount, 0), coalesce(l.used, 0),
       coalesce(o.loans, 0), coalesce(o.balance, 0), coalesce(o.overdue, 0), coalesce(o.npl, 0)
  FROM counties_township t
  LEFT JOIN (SELECT v.township_id, count(DISTINCT c.farmer_id) AS farmers
               FROM data_sharing_consent c
               JOIN counties_farmer f ON f.id = c.farmer_id
               JOIN counties_village v ON v.id = f.village_id
              WHERE c.status = 'active'
              GROUP BY v.township_id) c ON c.township_id = t.id
  LEFT JOIN (SELECT v.township_id, count(*) AS farmers, sum(cl.amount) AS amount,
                    sum(cl.outstanding_principal) AS used
               FROM loans_creditline cl
               JOIN counties_farmer f ON f.id = cl.farmer_id
               JOIN counties_village v ON v.id = f.village_id
              WHERE cl.status = 'active'
              GROUP BY v.township_id) l ON l.township_id = t.id
  LEFT JOIN (SELECT v.township_id, count(*) AS loans, sum(lo.outstanding_principal) AS balance,
                    sum(lo.outstanding_principal) FILTER (WHERE lo.days_past_due > 0) AS overdue,
                    sum(lo.outstanding_principal) FILTER (WHERE lo.classification = ANY(%(npl)s)) AS npl
               FROM loans_loan lo
               JOIN counties_farmer f ON f.id = lo.farmer_id
               JOIN counties_village v ON v.id = f.village_id
              WHERE lo.status = 'active'
              GROUP BY v.township_id) o ON o.township_id = t.id
ON CONFLICT (business_date, township_id) DO UPDATE SET
       consented_farmers = EXCLUDED.consented_farmers, lined_farmers = EXCLUDED.lined_farmers,
       lines_amount = EXCLUDED.lines_amount, lines_used = EXCLUDED.lines_used, loans = EXCLUDED.loans,
       loan_balance = EXCLUDED.loan_balance, overdue_balance = EXCLUDED.overdue_balance,
       npl_balance = EXCLUDED.npl_balance
"""


def portfolio_stats_refresh(*, business_date: dt.date) -> dict[str, int]:
    """Snapshot today's consents, lines and loan book as ``business_date``'s figures.

    The figures are the state when the step runs, so rerunning the newest date refreshes it;
    rerunning an older date (one with a newer snapshot already taken) leaves its snapshot as it
    was — the state now is not that date's — and reports ``{"skipped": 1}``."""
    newest = PortfolioDailyStat.objects.order_by("-business_date").values_list("business_date", flat=True).first()
    if newest is not None and business_date < newest:
        return {"townships": 0, "skipped": 1}
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_SQL, {"day": business_date, "npl": list(NPL_CLASSIFICATIONS)})
        return {"townships": cursor.rowcount}
