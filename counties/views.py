from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from counties import selectors
from data_sharing.pii import decrypt, mask_id_number


def county_home(request: HttpRequest) -> HttpResponse:
    return render(request, "counties/home.html", {"county": request.tenant, "summary": selectors.county_summary()})


@login_required
def farmer_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    rows = []
    if query:
        rows = [
            {"farmer": farmer, "id_masked": mask_id_number(decrypt(farmer.id_number_encrypted))}
            for farmer in selectors.farmer_search(name=query)
        ]
    return render(request, "counties/farmer_list.html", {"query": query, "rows": rows, "county": request.tenant})
