"""Pages of the officials' portal. Each view checks who may use it (:func:`official_required`),
reads through :mod:`counties.selectors` or writes through :mod:`counties.portal.services`, and
renders. A township officer's pages are scoped to their township throughout."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from counties import selectors
from counties.models import Official, Township
from counties.portal import services
from counties.portal.auth import Role, official_required
from counties.portal.exports import csv_response
from counties.portal.forms import DateRangeForm, FarmerSearchForm, OfficialCreateForm, PurposeForm
from counties.portal.nav import (
    ACCESS_LOG_ROLES,
    DASHBOARD_ROLES,
    FARMER_ROLES,
    LOANS_ROLES,
    NIGHTLY_ROLES,
    OFFICIALS_ROLES,
    PROGRAMME_WRITE_ROLES,
    RERUN_ROLES,
    portal_page,
)
from data_sharing.pii import decrypt, mask_id_number, mask_phone

_page = portal_page


def _township_scope(request: HttpRequest) -> int | None:
    """None (the whole county) for county-level officials; a township officer's own township."""
    official: Official = request.official
    return official.township_id if official.role == Role.TOWNSHIP_OFFICER else None


def _english() -> bool:
    return (get_language() or "").startswith("en")


# --- Dashboard ----------------------------------------------------------------------------------


def _dashboard_data(request: HttpRequest) -> tuple[selectors.Dashboard, Township | None]:
    scope = _township_scope(request)
    if scope is not None:
        villages_of = request.official.township
    else:
        code = request.GET.get("township", "").strip()
        villages_of = get_object_or_404(Township, code=code) if code else None
    return selectors.dashboard(township_id=scope, villages_of=villages_of), villages_of


@official_required(roles=DASHBOARD_ROLES)
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    data, villages_of = _dashboard_data(request)
    scoped = _township_scope(request) is not None
    return _page(
        request,
        "counties/portal/dashboard.html",
        {
            "data": data,
            "villages_of": villages_of,
            "scoped": scoped,
            "not_scoped": not scoped,
            "chart_labels": {
                "consent_coverage": _("授权覆盖率"),
                "line_coverage": _("授信覆盖率"),
                "loan_balance": _("贷款余额（元）"),
                "overdue_ratio": _("逾期率"),
                "npl_ratio": _("不良率"),
                "no_history": _("还没有按日统计：夜间批处理运行后显示。"),
                "drill": "" if scoped else reverse("portal-dashboard"),
            },
        },
        section="portal-dashboard",
    )


@official_required(roles=DASHBOARD_ROLES)
@require_GET
def dashboard_json(request: HttpRequest) -> JsonResponse:
    """The dashboard's figures for the charts: totals, per township, per village of the chosen
    (or the officer's own) township, and per business date. Money and ratios are strings."""
    data, villages_of = _dashboard_data(request)

    def area(item: selectors.AreaFigures) -> dict:
        return {"code": item.code, "name": item.name, **item.figures.as_json()}

    response = JsonResponse(
        {
            "scope": None if _township_scope(request) is None else request.official.township.code,
            "villages_of": villages_of.code if villages_of else None,
            "total": data.total.as_json(),
            "townships": [area(item) for item in data.townships],
            "villages": [area(item) for item in data.villages],
            "history": selectors.dashboard_history(township_id=_township_scope(request)),
        }
    )
    response["Cache-Control"] = "no-store"
    return response


# --- Loans --------------------------------------------------------------------------------------


@official_required(roles=LOANS_ROLES)
@require_GET
def loans(request: HttpRequest) -> HttpResponse:
    from loans.models import Loan

    scope = _township_scope(request)
    classification = request.GET.get("classification", "")
    if classification not in Loan.Classification.values:
        classification = ""
    township_code = "" if scope is not None else request.GET.get("township", "").strip()
    overdue_only = request.GET.get("overdue") == "1"
    rows, total = selectors.loan_classification_matrix(township_id=scope)
    page = Paginator(
        selectors.loans_list(
            township_id=scope, classification=classification, township_code=township_code, overdue_only=overdue_only
        ),
        50,
    ).get_page(request.GET.get("page"))
    return _page(
        request,
        "counties/portal/loans.html",
        {
            "classes": Loan.Classification.choices,
            "rows": rows,
            "total": total,
            "page": page,
            "classification": classification,
            "township_code": township_code,
            "overdue_only": overdue_only,
            "townships": [] if scope is not None else Township.objects.order_by("code"),
            "can_open_farmers": request.official.role in FARMER_ROLES,
            "can_write_off": request.official.role in PROGRAMME_WRITE_ROLES,
            "query": _query_without_page(request),
        },
        section="portal-loans",
    )


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# --- Nightly runs -------------------------------------------------------------------------------


@official_required(roles=NIGHTLY_ROLES)
@require_GET
def nightly(request: HttpRequest) -> HttpResponse:
    return _page(
        request,
        "counties/portal/nightly.html",
        {"page": selectors.nightly_runs(page=request.GET.get("page")), "can_rerun": request.official.role in RERUN_ROLES},
        section="portal-nightly",
    )


def _run_or_404(business_date: str) -> selectors.NightlyRunView:
    try:
        day = dt.date.fromisoformat(business_date)
    except ValueError:
        raise Http404 from None
    view = selectors.nightly_run_view(business_date=day)
    if view is None:
        raise Http404
    return view


@official_required(roles=NIGHTLY_ROLES)
@require_GET
def nightly_detail(request: HttpRequest, business_date: str) -> HttpResponse:
    view = _run_or_404(business_date)
    return _page(
        request,
        "counties/portal/nightly_detail.html",
        {
            "view": view,
            "progress": selectors.nightly_progress(view=view),
            "can_rerun": request.official.role in RERUN_ROLES,
        },
        section="portal-nightly",
    )


@official_required(roles=NIGHTLY_ROLES)
@require_GET
def nightly_progress(request: HttpRequest, business_date: str) -> JsonResponse:
    response = JsonResponse(selectors.nightly_progress(view=_run_or_404(business_date)))
    response["Cache-Control"] = "no-store"
    return response


@official_required(roles=RERUN_ROLES)
@require_POST
def nightly_rerun(request: HttpRequest, business_date: str) -> HttpResponse:
    view = _run_or_404(business_date)
    try:
        services.nightly_rerun_request(business_date=view.run.business_date, actor=request.user.get_username())
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("已重新排队，进度会在下面显示。"))
    return redirect("portal-nightly-run", business_date=view.run.business_date.isoformat())


# --- Farmers ------------------------------------------------------------------------------------


def _masked_phone(farmer) -> str:
    return mask_phone(decrypt(farmer.phone_encrypted)) if farmer.phone_encrypted else ""


@official_required(roles=FARMER_ROLES)
@require_GET
def farmer_list(request: HttpRequest) -> HttpResponse:
    """Search the roster by name, village, or exact ID or phone number; PII shown masked."""
    form = FarmerSearchForm(request.GET or None)
    query = village = ""
    rows = []
    if form.is_valid():
        query, village = form.cleaned_data["q"], form.cleaned_data["village"]
        farmers = selectors.farmer_lookup_search(query=query, village=village, township_id=_township_scope(request))
        rows = [
            {"farmer": farmer, "id_masked": mask_id_number(decrypt(farmer.id_number_encrypted)), "phone_masked": _masked_phone(farmer)}
            for farmer in farmers
        ]
    return _page(
        request,
        "counties/farmer_list.html",
        {"form": form, "query": query, "village": village, "rows": rows, "searched": bool(query or village)},
        section="official-farmers",
    )


@never_cache
@official_required(roles=FARMER_ROLES)
def farmer_detail(request: HttpRequest, farmer_id: int) -> HttpResponse:
    """GET asks why (a purpose and a note); POST reads the farmer's data through the consent
    gate — logged with that purpose — and shows consent, line, loans and admitted records.
    A farmer outside a township officer's township does not exist for them (404)."""
    farmer = selectors.farmer_in_scope(farmer_id=farmer_id, township_id=_township_scope(request))
    if farmer is None:
        raise Http404
    header = {"farmer": farmer, "id_masked": mask_id_number(decrypt(farmer.id_number_encrypted)), "phone_masked": _masked_phone(farmer)}
    form = PurposeForm(request.POST or None)
    if request.method != "POST" or not form.is_valid():
        return _page(request, "counties/portal/farmer_purpose.html", {**header, "form": form}, section="official-farmers")
    read = services.farmer_lookup(
        farmer=farmer, user=request.user, role=request.official.role,
        purpose=form.cleaned_data["purpose"], note=form.cleaned_data["note"],
    )
    return _page(
        request, "counties/portal/farmer_detail.html", {**header, **_farmer_context(farmer, read)}, section="official-farmers"
    )


def _farmer_context(farmer, read: services.FarmerRead) -> dict:
    from data_sharing import consent_selectors
    from data_sharing.imports import field_labels
    from data_sharing.models import DataCategory
    from loans.models import CreditLine
    from loans.selectors import farmer_loans

    english = _english()
    consents = [
        {"consent": consent, "needs_reconsent": consent_selectors.consent_needs_reconsent(consent=consent)}
        for consent in consent_selectors.farmer_consents(farmer=farmer)
    ]
    categories = {category.code: category for category in DataCategory.objects.filter(code__in=list(read.records))}
    records = []
    for code, items in sorted(read.records.items()):
        category = categories.get(code)
        labels = field_labels(category) if category else {}
        records.append(
            {
                "name": (category.name_en if english else category.name_zh) if category else code,
                "items": [
                    {
                        "record_key": item["record_key"],
                        "as_of_date": item["as_of_date"],
                        "fields": [
                            (labels.get(key, (key, key))[1 if english else 0], value)
                            for key, value in sorted(item["data"].items())
                        ],
                    }
                    for item in items
                ],
            }
        )
    return {
        "lookup": read.lookup,
        "partner": read.partner,
        "consents": consents,
        "line": CreditLine.objects.filter(farmer=farmer).select_related("assessment").first(),
        "loans": list(farmer_loans(farmer=farmer)),
        "records": records,
        "gate_read": read.lookup.access_log_id is not None,
    }


# --- Access log ---------------------------------------------------------------------------------


def _mask_name(name: str) -> str:
    return name[:1] + "*" * (len(name) - 1) if name else ""


def _access_row(entry) -> dict:
    farmer = entry.farmer
    lookup = getattr(entry, "lookup", None)
    return {
        "at": timezone.localtime(entry.at),
        "accessor_type": entry.get_accessor_type_display(),
        "accessor": entry.accessor,
        "partner": entry.partner.name if entry.partner else "",
        "farmer": f"{_mask_name(farmer.name)} {mask_id_number(decrypt(farmer.id_number_encrypted))}" if farmer else "",
        "farmer_count": entry.farmer_count,
        "categories": ", ".join(entry.categories),
        "purpose": entry.purpose,
        "official_purpose": lookup.get_purpose_display() if lookup else "",
        "note": lookup.note if lookup else "",
        "business_date": entry.business_date,
    }


def _access_dates(request: HttpRequest) -> tuple[DateRangeForm, dt.date | None, dt.date | None]:
    form = DateRangeForm(request.GET or None)
    if form.is_valid():
        return form, form.cleaned_data["date_from"], form.cleaned_data["date_to"]
    return form, None, None


@official_required(roles=ACCESS_LOG_ROLES)
@require_GET
def access_log(request: HttpRequest) -> HttpResponse:
    """Every read of personal data in the county: who, when, which farmer (masked), which
    categories, for what — through the gate's own reader of the log."""
    from data_sharing.gate import access_log_all

    form, date_from, date_to = _access_dates(request)
    page = access_log_all(viewer=request.user, date_from=date_from, date_to=date_to, page=request.GET.get("page") or 1)
    return _page(
        request,
        "counties/portal/access_log.html",
        {"form": form, "page": page, "rows": [_access_row(entry) for entry in page.object_list], "query": _query_without_page(request)},
        section="portal-access",
    )


CSV_HEADER = [
    "时间 Time", "访问者类型 Accessor type", "访问者 Accessor", "贷款机构 Partner", "农民 Farmer", "涉及人数 Farmers",
    "数据类别 Categories", "授权用途 Consent purpose", "查询目的 Purpose", "说明 Note", "业务日期 Business date",
]
# Rows per page read for the export (the gate's largest page).
_EXPORT_PAGE_SIZE = 500


def access_log_entries(*, viewer, date_from: dt.date | None, date_to: dt.date | None) -> Iterator:
    """Every entry of the log, newest first, page by page through the gate's reader. A read
    logged while the export runs lands in front and shifts the pages by a row: entries not
    older than the last one written are skipped, so none comes twice."""
    from data_sharing.gate import access_log_all

    number, last = 1, None
    while True:
        page = access_log_all(
            viewer=viewer, date_from=date_from, date_to=date_to, page=number, page_size=_EXPORT_PAGE_SIZE
        )
        if page.number != number:  # past the last page (get_page clamps)
            return
        for entry in page.object_list:
            if last is not None and (entry.at, entry.pk) >= last:
                continue
            last = (entry.at, entry.pk)
            yield entry
        if not page.has_next():
            return
        number += 1


@official_required(roles=ACCESS_LOG_ROLES)
@require_GET
def access_log_csv(request: HttpRequest) -> StreamingHttpResponse:
    _form, date_from, date_to = _access_dates(request)

    def rows() -> Iterator[list]:
        for entry in access_log_entries(viewer=request.user, date_from=date_from, date_to=date_to):
            row = _access_row(entry)
            yield [
                row["at"].isoformat(timespec="seconds"), row["accessor_type"], row["accessor"], row["partner"],
                row["farmer"], row["farmer_count"], row["categories"], row["purpose"], row["official_purpose"],
                row["note"], row["business_date"] or "",
            ]

    span = f"{date_from or 'start'}_{date_to or timezone.localdate()}"
    return csv_response(f"access-log-{request.tenant.code}-{span}.csv", CSV_HEADER, rows())


# --- Officials ----------------------------------------------------------------------------------


@official_required(roles=OFFICIALS_ROLES)
def officials(request: HttpRequest) -> HttpResponse:
    from axes.models import AccessAttempt
    from django.conf import settings
    from django_otp.plugins.otp_totp.models import TOTPDevice

    form = OfficialCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.official_create(
                username=form.cleaned_data["username"], password=form.cleaned_data["password"],
                role=form.cleaned_data["role"], township=form.cleaned_data["township"],
                actor=request.user.get_username(),
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(
                request,
                _("已添加 %(username)s。首次登录时需要绑定身份验证器。") % {"username": created.user.get_username()},
            )
            return redirect("portal-officials")
    rows = list(Official.objects.select_related("user", "township").order_by("role", "user__username"))
    with_device = set(TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True))
    locked = set(
        AccessAttempt.objects.filter(failures_since_start__gte=settings.AXES_FAILURE_LIMIT).values_list("username", flat=True)
    )
    return _page(
        request,
        "counties/portal/officials.html",
        {
            "form": form,
            "rows": [
                {"official": row, "has_device": row.user_id in with_device, "locked": row.user.get_username() in locked}
                for row in rows
            ],
        },
        section="portal-officials",
    )


def _other_official(request: HttpRequest, official_id: int) -> Official:
    return get_object_or_404(Official.objects.select_related("user"), pk=official_id)


@official_required(roles=OFFICIALS_ROLES)
@require_POST
def official_reset_otp(request: HttpRequest, official_id: int) -> HttpResponse:
    target = _other_official(request, official_id)
    services.official_second_factor_reset(official=target, actor=request.user.get_username())
    messages.success(
        request, _("已重置 %(username)s 的身份验证器；其下次登录时重新绑定。") % {"username": target.user.get_username()}
    )
    return redirect("portal-officials")


@official_required(roles=OFFICIALS_ROLES)
@require_POST
def official_unlock(request: HttpRequest, official_id: int) -> HttpResponse:
    target = _other_official(request, official_id)
    services.official_unlock(official=target, actor=request.user.get_username())
    messages.success(request, _("已解除 %(username)s 的登录锁定。") % {"username": target.user.get_username()})
    return redirect("portal-officials")


@official_required(roles=OFFICIALS_ROLES)
@require_POST
def official_active(request: HttpRequest, official_id: int) -> HttpResponse:
    target = _other_official(request, official_id)
    if target.user_id == request.user.pk:
        messages.error(request, _("不能停用自己的账号。"))
        return redirect("portal-officials")
    active = request.POST.get("active") == "1"
    services.official_set_active(official=target, active=active, actor=request.user.get_username())
    return redirect("portal-officials")
