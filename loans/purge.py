"""Deleting derived credit data once a consent's data life has run out (a
``settings.DERIVED_DATA_PURGERS`` entry; see :func:`data_sharing.services.derived_data_purge`)."""

from __future__ import annotations

from django.db import connection

# The partner an assessment was made for is its policy's partner; a line's is that of the
# assessment that last set it, or the active policy's when it has none left.
_ASSESSMENTS_OF_TARGETS = """
    SELECT a.id FROM loans_creditassessment a
      JOIN loans_creditpolicy p ON p.version = a.policy_version
     WHERE (a.farmer_id, p.partner_id) IN ({targets_sql})
"""
_LINE_PARTNER = """
    COALESCE(
        (SELECT p.partner_id FROM loans_creditassessment a JOIN loans_creditpolicy p ON p.version = a.policy_version
          WHERE a.id = l.assessment_id),
        (SELECT p.partner_id FROM loans_creditpolicy p WHERE p.status = 'active'))
"""


def derived_credit_data_purge(*, targets_sql: str) -> int:
    """Delete the assessments and credit lines of the (farmer_id, partner_id) pairs that
    ``targets_sql`` selects; returns the rows deleted.

    A line with principal still outstanding is kept — it carries the debt until the loan is
    repaid — but loses its link to the assessments deleted here; the loan lifecycle closes it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""DELETE FROM loans_creditline l
                 WHERE l.outstanding_principal = 0 AND (l.farmer_id, {_LINE_PARTNER}) IN ({targets_sql})"""
        )
        lines = cursor.rowcount
        assessments = _ASSESSMENTS_OF_TARGETS.format(targets_sql=targets_sql)
        cursor.execute(f"UPDATE loans_creditline SET assessment_id = NULL WHERE assessment_id IN ({assessments})")
        cursor.execute(f"DELETE FROM loans_creditassessment WHERE id IN ({assessments})")
        return lines + cursor.rowcount
