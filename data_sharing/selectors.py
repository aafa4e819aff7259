"""Reads of the data-sharing schema."""

from __future__ import annotations

from django.core.cache import cache
from django.db.models import QuerySet

from data_sharing.imports import FINISHED, progress_cache_key
from data_sharing.models import DataCategory, ImportBatch

# --- Import batches -------------------------------------------------------------------------


def categories_with_recent_batches(*, per_category: int = 5) -> list[tuple[DataCategory, list[ImportBatch]]]:
    """Every active category with its latest ``per_category`` batches (two queries)."""
    categories = list(DataCategory.objects.filter(is_active=True).order_by("id"))
    recent: dict[int, list[ImportBatch]] = {category.pk: [] for category in categories}
    # One window query instead of one query per category.
    ranked = (
        ImportBatch.objects.raw(
            f"""
            SELECT * FROM (
                SELECT b.*, row_number() OVER (PARTITION BY b.category_id ORDER BY b.created_at DESC, b.id DESC) AS recent_rank
                  FROM {ImportBatch._meta.db_table} b
            ) ranked WHERE recent_rank <= %s ORDER BY category_id, recent_rank
            """,
            [per_category],
        )
    )
    for batch in ranked:
        if batch.category_id in recent:
            recent[batch.category_id].append(batch)
    return [(category, recent[category.pk]) for category in categories]


def batches_for_category(*, category: DataCategory) -> QuerySet[ImportBatch]:
    return ImportBatch.objects.filter(category=category).order_by("-created_at", "-id")


def batch_get(*, batch_id: int) -> ImportBatch | None:
    return ImportBatch.objects.select_related("category").filter(pk=batch_id).first()


def batch_progress(*, batch: ImportBatch) -> dict[str, object]:
    """Status and rows done / total for the portal's progress bar. While the batch runs, the
    row counts come from the cache (see data_sharing.imports: the import's own transaction
    cannot publish them); once it has finished, from the batch row."""
    rows_done, rows_total = batch.rows_done, batch.rows_total
    if batch.status == ImportBatch.Status.RUNNING:
        try:
            live = cache.get(progress_cache_key(batch.pk))
        except Exception:  # Redis down: the row's counts (progress is advisory)
            live = None
        if live:
            rows_done, rows_total = live["rows_done"], live["rows_total"]
    finished = batch.status in FINISHED or batch.status == ImportBatch.Status.FAILED
    return {
        "id": batch.pk,
        "status": batch.status,
        "status_display": str(batch.get_status_display()),
        "finished": finished,
        "rows_total": rows_total,
        "rows_done": rows_done,
        "rows_imported": batch.rows_imported,
        "error_count": batch.error_count,
        "percent": 100 if finished else (min(99, rows_done * 100 // rows_total) if rows_total else 0),
    }
