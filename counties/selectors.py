"""Reads of the county schema."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from counties.models import Farmer, Household, NightlyRun, Township, Village


def county_summary() -> dict[str, object]:
    return {
        "townships": Township.objects.count(),
        "villages": Village.objects.count(),
        "households": Household.objects.count(),
        "farmers": Farmer.objects.count(),
        "last_run": NightlyRun.objects.order_by("-business_date").first(),
    }


def farmer_search(*, name: str, limit: int = 50) -> QuerySet[Farmer]:
    """Farmers whose name starts with ``name`` (exact ID/phone lookups come through the blind
    index in data_sharing)."""
    return (
        Farmer.objects.filter(name__startswith=name.strip())
        .select_related("village__township")
        .order_by("name", "id")[:limit]
    )


def township_farmer_counts() -> QuerySet[Township]:
    return Township.objects.annotate(farmer_count=Count("villages__farmers")).order_by("code")
