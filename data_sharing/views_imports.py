"""The county portal's department-data pages, under /portal/data/: each category's import
history, the upload form (with the file's transfer shown as it goes, and the category's recent
imports), a batch's progress and report, and the report as CSV. The pages sit in the portal's
frame (its navigation for the official's role)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _

from data_sharing import imports, selectors
from data_sharing.models import DataCategory, ImportBatch

UPLOAD_EXTENSIONS = (".csv", ".txt", ".xlsx")
RECENT_BATCHES = 5


def _english() -> bool:
    return (get_language() or "").startswith("en")


def _render(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    from counties.portal.nav import portal_context

    return render(request, template, {**portal_context(request, section="data-imports"), **context})


def import_official_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Logged in (else the login page) and a data officer or county administrator (else 403)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not imports.user_can_import(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


class UploadForm(forms.Form):
    category = forms.ChoiceField(label=gettext_lazy("数据类别"))
    as_of_date = forms.DateField(
        label=gettext_lazy("数据截至日期"),
        help_text=gettext_lazy("部门导出数据所截至的日期；同一记录按截至日期保留各个版本。"),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    file = forms.FileField(label=gettext_lazy("文件"), help_text=gettext_lazy("CSV（UTF-8 或 GBK 编码）或 XLSX，最大 200 MB。"))

    def __init__(self, *args, categories: list[DataCategory], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["category"].choices = [
            (category.code, category.name_en if _english() else category.name_zh) for category in categories
        ]

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > imports.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                _("文件超过 %(limit)s MB 的上限，请分成几个文件上传。") % {"limit": imports.MAX_UPLOAD_BYTES // (1024 * 1024)}
            )
        if not upload.name.lower().endswith(UPLOAD_EXTENSIONS):
            raise forms.ValidationError(_("只支持 CSV 或 XLSX 文件。"))
        return upload


@import_official_required
def category_list(request: HttpRequest) -> HttpResponse:
    rows = selectors.categories_with_recent_batches(per_category=5)
    return _render(request, "data_sharing/imports/list.html", {"rows": rows, "english": _english()})


@import_official_required
def category_history(request: HttpRequest, code: str) -> HttpResponse:
    category = get_object_or_404(DataCategory, code=code)
    page = Paginator(selectors.batches_for_category(category=category), 50).get_page(request.GET.get("page"))
    return _render(request, "data_sharing/imports/category.html", {"category": category, "page": page, "english": _english()})


@import_official_required
def upload(request: HttpRequest) -> HttpResponse:
    categories = list(DataCategory.objects.filter(is_active=True).order_by("id"))
    form = UploadForm(
        request.POST or None, request.FILES or None, categories=categories, initial={"category": request.GET.get("category")}
    )
    if request.method == "POST" and form.is_valid():
        upload_file = form.cleaned_data["file"]
        try:
            batch, created = imports.batch_submit_file(
                category_code=form.cleaned_data["category"],
                file_name=upload_file.name,
                content=upload_file.read(),
                as_of_date=form.cleaned_data["as_of_date"],
                submitted_by=request.user.get_username(),
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            if not created:
                messages.info(request, _("这个文件已经以同一截至日期提交过，不会重复导入；下面是该批次。"))
            return redirect("data-import-batch", batch_id=batch.pk)
    chosen = next((category for category in categories if category.code == (form["category"].value() or "")), None)
    return _render(
        request,
        "data_sharing/imports/upload.html",
        {
            "form": form,
            "max_mb": imports.MAX_UPLOAD_BYTES // (1024 * 1024),
            "chosen": chosen,
            # The chosen category's latest imports, so an official sees what is already in.
            "recent": list(selectors.batches_for_category(category=chosen)[:RECENT_BATCHES]) if chosen else [],
            "english": _english(),
        },
    )


def _batch_or_404(batch_id: int) -> ImportBatch:
    batch = selectors.batch_get(batch_id=batch_id)
    if batch is None:
        raise Http404
    return batch


@import_official_required
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _batch_or_404(batch_id)
    english = _english()
    labels = imports.field_labels(batch.category)
    errors = [
        {
            "line": error["line"],
            "field": error["field"],
            "label": labels.get(error["field"], (error["field"], error["field"]))[english],
            "reason": error["reason_en"] if english else error["reason_zh"],
        }
        for error in batch.errors
    ]
    return _render(
        request,
        "data_sharing/imports/batch.html",
        {
            "batch": batch,
            "progress": selectors.batch_progress(batch=batch),
            "errors": errors,
            # Rows already present for this as-of date (ON CONFLICT DO NOTHING): neither imported nor overwritten.
            "skipped": batch.rows_total - batch.rows_imported if batch.status == ImportBatch.Status.SUCCEEDED else 0,
            "english": english,
        },
    )


@import_official_required
def batch_progress(request: HttpRequest, batch_id: int) -> JsonResponse:
    batch = _batch_or_404(batch_id)
    response = JsonResponse(selectors.batch_progress(batch=batch))
    response["Cache-Control"] = "no-store"
    return response


@import_official_required
def batch_errors_csv(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _batch_or_404(batch_id)
    response = HttpResponse(imports.error_report_csv(batch), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{batch.pk}-errors.csv"'
    return response
