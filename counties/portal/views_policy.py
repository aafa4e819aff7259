"""The credit policy pages: the policy in force with its scorecard's model card, drafting a new
version, the what-if sandbox, submission and the second official's approval.

Every write goes through :mod:`loans.policy` (which refuses an approval by the official who
submitted); the sandbox figures come from :func:`loans.simulation.policy_simulate`, which writes
nothing. Administrators and risk officers write; auditors read (``official_required`` refuses
them anything but a read)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from counties.portal.auth import official_required
from counties.portal.forms import (
    DraftNewForm,
    GradeFormSet,
    PolicyParamsForm,
    PolicyRejectForm,
    grade_initial,
    grade_rows,
)
from counties.portal.model_card import model_card, psi_chart, psi_history
from counties.portal.nav import POLICY_ROLES, POLICY_WRITE_ROLES, portal_page
from loans.models import CreditPolicy, PolicyEvent
from loans.policy import (
    DEFAULT_GRADES,
    POLICY_FIELDS,
    policy_active,
    policy_approve,
    policy_create_draft,
    policy_reject,
    policy_submit,
    policy_update_draft,
)
from loans.scorecards import scorecard_active
from loans.simulation import policy_simulate

Status = CreditPolicy.Status
SECTION = "portal-policy"


def _english() -> bool:
    return (get_language() or "").startswith("en")


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _can_write(request: HttpRequest) -> bool:
    return request.official.role in POLICY_WRITE_ROLES


def _policy_or_404(version: int) -> CreditPolicy:
    policy = CreditPolicy.objects.select_related("partner").filter(version=version).first()
    if policy is None:
        raise Http404
    return policy


def _messages_of(error: ValidationError) -> list[str]:
    return list(error.messages)


# --- The policy in force -------------------------------------------------------------------------


@official_required(roles=POLICY_ROLES)
@require_GET
def policy(request: HttpRequest) -> HttpResponse:
    active = policy_active()
    scorecard = scorecard_active()
    history = psi_history()
    return portal_page(
        request,
        "counties/portal/policy.html",
        {
            "active": active,
            "card": model_card(scorecard) if scorecard else None,
            "english": _english(),
            "psi_history": history,
            "psi_chart": {**psi_chart(history), "label": _("PSI"), "watch": "0.1", "warning": "0.25"},
            "in_progress": CreditPolicy.objects.filter(status__in=(Status.DRAFT, Status.PENDING)).order_by("-version"),
            "others": CreditPolicy.objects.filter(status=Status.RETIRED).order_by("-version")[:20],
            "events": PolicyEvent.objects.select_related("policy").order_by("-at", "-id")[:30],
            "can_write": _can_write(request),
            "new_form": DraftNewForm(initial={"partner": active.partner_id if active else None}),
        },
        section=SECTION,
    )


@official_required(roles=POLICY_WRITE_ROLES)
@require_POST
def policy_new(request: HttpRequest) -> HttpResponse:
    """A new draft, copying the parameters of the policy in force (or the shipped defaults)."""
    form = DraftNewForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("请选择贷款机构。"))
        return redirect("portal-policy")
    active = policy_active()
    if active is not None:
        params = {name: getattr(active, name) for name in POLICY_FIELDS if name != "partner"}
    else:
        params = {"grades": [dict(grade) for grade in DEFAULT_GRADES]}
    try:
        draft = policy_create_draft(partner=form.cleaned_data["partner"], actor=_actor(request), **params)
    except ValidationError as error:
        for message in _messages_of(error):
            messages.error(request, message)
        return redirect("portal-policy")
    messages.success(request, _("已起草第 %(version)s 版：修改参数并模拟，满意后提交审批。") % {"version": draft.version})
    return redirect("portal-policy-version", version=draft.version)


# --- One version: the sandbox, submission, approval ---------------------------------------------


def _bind_errors(error: ValidationError, form: PolicyParamsForm) -> list[str]:
    """Put the service's per-field errors on the form's fields; the rest (the grade table,
    anything without a field) come back as messages for the grade table."""
    rest: list[str] = []
    if not hasattr(error, "error_dict"):
        return _messages_of(error)
    for field, errors in error.error_dict.items():
        texts = [text for item in errors for text in item.messages]
        if field in form.fields:
            for text in texts:
                form.add_error(field, text)
        else:
            rest += texts
    return rest


@official_required(roles=POLICY_ROLES)
def policy_version(request: HttpRequest, version: int) -> HttpResponse:
    """A version's parameters. A draft is the sandbox: its writers edit it here ("save and
    simulate", or "save and submit"), and every draft or pending version shows the simulation
    of last night's farmers under the policy in force and under it."""
    policy = _policy_or_404(version)
    editable = policy.status == Status.DRAFT and _can_write(request)
    params_form = PolicyParamsForm(initial=PolicyParamsForm.initial_of(policy))
    grades_formset = GradeFormSet(initial=grade_initial(policy), prefix="grades")
    grade_errors: list[str] = []
    if request.method == "POST":
        if not editable:
            messages.error(request, _("只能修改草稿状态的政策。"))
            return redirect("portal-policy-version", version=version)
        params_form = PolicyParamsForm(request.POST)
        grades_formset = GradeFormSet(request.POST, prefix="grades")
        if params_form.is_valid() and grades_formset.is_valid():
            action = request.POST.get("action", "simulate")
            try:
                with transaction.atomic():
                    policy_update_draft(
                        policy=policy, actor=_actor(request), grades=grade_rows(grades_formset), **params_form.params()
                    )
                    if action == "submit":
                        policy_submit(policy=policy, actor=_actor(request))
            except ValidationError as error:
                grade_errors = _bind_errors(error, params_form)
            else:
                if action == "submit":
                    messages.success(
                        request, _("已提交第 %(version)s 版，等待另一名工作人员审批。") % {"version": policy.version}
                    )
                    return redirect("portal-policy-version", version=version)
                messages.success(request, _("已保存。下面是按上一晚数据模拟的结果。"))
                return redirect(reverse("portal-policy-version", kwargs={"version": version}) + "#whatif")
        else:
            grade_errors = [text for form in grades_formset.forms for errors in form.errors.values() for text in errors]
            grade_errors += list(grades_formset.non_form_errors())
    simulation = None
    if policy.status in (Status.DRAFT, Status.PENDING):
        simulation = _simulation_view(policy_simulate(draft=policy))
    return portal_page(
        request,
        "counties/portal/policy_version.html",
        {
            "policy": policy,
            "active": policy_active(),
            "editable": editable,
            "params_form": params_form,
            "grades_formset": grades_formset,
            "grade_errors": grade_errors,
            "simulation": simulation,
            "can_write": _can_write(request),
            "reject_form": PolicyRejectForm(),
            "events": PolicyEvent.objects.filter(policy=policy).order_by("-at", "-id"),
        },
        section=SECTION,
    )


@official_required(roles=POLICY_WRITE_ROLES)
@require_POST
def policy_version_submit(request: HttpRequest, version: int) -> HttpResponse:
    policy = _policy_or_404(version)
    try:
        policy_submit(policy=policy, actor=_actor(request))
    except ValidationError as error:
        for message in _messages_of(error):
            messages.error(request, message)
    else:
        messages.success(request, _("已提交第 %(version)s 版，等待另一名工作人员审批。") % {"version": version})
    return redirect("portal-policy-version", version=version)


@official_required(roles=POLICY_WRITE_ROLES)
@require_POST
def policy_version_approve(request: HttpRequest, version: int) -> HttpResponse:
    """The second official activates the version; its submitter is refused (the service says
    why, shown as the page's message)."""
    policy = _policy_or_404(version)
    try:
        policy_approve(policy=policy, actor=_actor(request))
    except ValidationError as error:
        for message in _messages_of(error):
            messages.error(request, message)
    else:
        messages.success(request, _("第 %(version)s 版已生效，今晚的授信测算起使用。") % {"version": version})
    return redirect("portal-policy-version", version=version)


@official_required(roles=POLICY_WRITE_ROLES)
@require_POST
def policy_version_reject(request: HttpRequest, version: int) -> HttpResponse:
    policy = _policy_or_404(version)
    form = PolicyRejectForm(request.POST)
    reason = form.cleaned_data["reason"].strip() if form.is_valid() else ""
    try:
        policy_reject(policy=policy, actor=_actor(request), reason=reason)
    except ValidationError as error:
        for message in _messages_of(error):
            messages.error(request, message)
    else:
        messages.success(request, _("第 %(version)s 版已退回为草稿。") % {"version": version})
    return redirect("portal-policy-version", version=version)


# --- The simulation as the page shows it ---------------------------------------------------------


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


def _simulation_view(result: dict) -> dict:
    """Rows for the side-by-side table: each figure under the policy in force and the draft."""
    active, draft = result["active"], result["draft"]
    if draft is None:
        return {"business_date": result["business_date"], "assessed": 0, "empty": True}

    def pair(key: str) -> tuple:
        return (active[key] if active else None, draft[key])

    def grade_of(side: dict | None, code: str) -> dict | None:
        if side is None:
            return None
        return next((grade for grade in side["grades"] if grade["grade"] == code), None)

    summary = [
        {"key": "lined", "label": _("有额度的农户"), "values": pair("lined"), "money": False},
        {"key": "coverage", "label": _("授信覆盖率（有额度 ÷ 参评）"), "values": tuple(_pct(v) for v in pair("coverage")), "money": False},
        {"key": "total", "label": _("授信总额（元）"), "values": pair("total"), "money": True},
        {"key": "average", "label": _("户均额度（元）"), "values": pair("average"), "money": True},
        {"key": "expected_loss", "label": _("预期损失（元，Σ PD × 额度）"), "values": pair("expected_loss"), "money": True},
    ]
    grades = [
        {"grade": code, "active": grade_of(active, code), "draft": grade_of(draft, code)} for code in result["grades"]
    ]
    return {
        "empty": False,
        "business_date": result["business_date"],
        "assessed": result["assessed"],
        "scorecard_version": result["scorecard_version"],
        "active_version": active["policy_version"] if active else None,
        "draft_version": draft["policy_version"],
        "summary": summary,
        "grades": grades,
        "moves": result["moves"],
    }
