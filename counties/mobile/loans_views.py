"""The farmer portal's borrowing and repayment pages under /m/ (thin: validate, call one loan
service, render).

Borrowing is three screens, from the home page's "borrow" button to "money on its way":

1. ``/m/borrow/`` — amount (prefilled, quick picks), term and method, with a live schedule
   preview (``/m/borrow/preview/``, an HTML fragment fetched by mobile.js on every change; without
   JavaScript the "preview" button does the same by a round trip). "Next" checks the terms with
   :func:`loans.services.drawdown_quote` and sends an SMS code bound to them.
2. ``/m/borrow/confirm/`` — the terms once more and the code. The code is checked and the loan
   drawn inside :func:`loans.idempotency.idempotent` under the page's idempotency key, so a
   double tap makes one loan; the second tap gets the first one's result.
3. ``/m/borrow/done/<id>/`` — the money is on its way: amount, first due date and payment.

A refusal (:class:`loans.services.LoanRefused`) is shown in plain words on screen 1 with the
farmer's inputs kept. The terms between the screens live in the session, never in a URL.

My loans (``/m/loans/``, ``/m/loans/<id>/``): each loan's state in plain words, its schedule with
paid/due/overdue marks, "repay now" (what has fallen due by today), an early payoff quote for
today and partial prepayment. Every loan id in a URL is looked up among the logged-in farmer's
own loans: anyone else's answers 404, for POSTs too.

There is no real bank in this demo: repaying here posts the repayment straight to the loan
book (channel "mobile"), as if the farmer's bank had already collected the money. With a real
partner the page would start a payment and the partner would post the repayment through the
API (``loans/api.py``) once collected.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from counties.mobile import loans_selectors, selectors, services
from counties.mobile.auth import farmer_required
from counties.mobile.forms import BORROW_REFUSAL_FIELDS, BorrowForm, ConfirmForm, PrepayForm, RepayForm
from loans import services as loan_services
from loans.idempotency import IdempotencyError, IdempotencyInProgress, idempotent
from loans.models import CreditLine, Loan
from loans.selectors import farmer_loan

SESSION_BORROW = "mobile_borrow"
# A drawdown started (terms chosen, code sent) must be confirmed within this.
BORROW_STEP_TTL = dt.timedelta(minutes=15)
# A repeat of a request still running (a double tap) waits this long for the first's result.
IN_PROGRESS_WAIT = dt.timedelta(seconds=5)
IN_PROGRESS_POLL = 0.2


def _demo_mode() -> bool:
    return settings.PUHUI_MODE == "local"


def _refusal_text(refusal: Exception) -> str:
    return " ".join(str(message) for message in getattr(refusal, "messages", [str(refusal)]))


def _scope(request: HttpRequest) -> str:
    return f"farmer:{request.farmer.pk}"


def _once(request: HttpRequest, *, key: str, operation: str, data: dict, run: Callable[[], tuple[int, dict]]):
    """``run`` at most once per idempotency key (:func:`loans.idempotency.idempotent`); a repeat
    arriving while the first is still running (a double tap) waits briefly for its result."""
    deadline = time.monotonic() + IN_PROGRESS_WAIT.total_seconds()
    while True:
        try:
            return idempotent(scope=_scope(request), key=key, operation=operation, request=data, run=run)
        except IdempotencyInProgress:
            if time.monotonic() >= deadline:
                raise
            time.sleep(IN_PROGRESS_POLL)


def _farmer_loan(request: HttpRequest, loan_id: int) -> Loan:
    loan = farmer_loan(farmer=request.farmer, loan_id=loan_id)
    if loan is None:
        raise Http404
    return loan


# --- Borrow: the session between the screens --------------------------------------------------


def _pending(request: HttpRequest) -> dict | None:
    """The drawdown being confirmed: amount, term, method, idempotency key, demo code, and
    ``loan_id`` once it is made."""
    state = request.session.get(SESSION_BORROW)
    if not isinstance(state, dict):
        return None
    if timezone.now() - dt.datetime.fromisoformat(state["at"]) > BORROW_STEP_TTL:
        request.session.pop(SESSION_BORROW, None)
        return None
    return state


def _save_pending(request: HttpRequest, state: dict) -> None:
    request.session[SESSION_BORROW] = state


def _terms(state: dict) -> dict:
    return {"amount": state["amount"], "term_months": state["term_months"], "method": state["method"]}


def _line(request: HttpRequest) -> CreditLine | None:
    return CreditLine.objects.filter(farmer=request.farmer).select_related("assessment").first()


def _borrow_form(offer: loans_selectors.BorrowOffer, data=None, initial=None) -> BorrowForm:
    return BorrowForm(
        data,
        initial=initial,
        terms=[term["value"] for term in offer.terms],
        methods=[method["value"] for method in offer.methods],
    )


def _quote(line: CreditLine, terms: dict) -> loans_selectors.QuoteView:
    """Raises LoanRefused when the terms are not allowed."""
    schedule = loan_services.drawdown_quote(line=line, **terms)
    return loans_selectors.quote_view(schedule=schedule, line=line)


def _add_refusal(form: BorrowForm, refusal: loan_services.LoanRefused) -> None:
    form.add_error(BORROW_REFUSAL_FIELDS.get(refusal.code), _refusal_text(refusal))


# --- Borrow: screen 1 --------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@farmer_required
def borrow(request: HttpRequest) -> HttpResponse:
    status = selectors.line_status(farmer=request.farmer)
    if status.state != "active" or status.needs_consent_action or status.line.available <= 0:
        return render(request, "mobile/borrow_closed.html", {"status": status})
    offer = loans_selectors.borrow_offer(line=status.line)
    quote = None
    if request.method == "POST":
        data = request.POST.copy()
        preview = "preview" in data or "pick" in data
        if "pick" in data:  # a quick-pick button without JavaScript: take its amount, preview
            data["amount"] = data["pick"]
        form = _borrow_form(offer, data)
        if form.is_valid():
            terms = form.cleaned_data
            try:
                quote = _quote(status.line, terms)
                if not preview:
                    return _borrow_next(request, terms)
            except loan_services.LoanRefused as refusal:
                _add_refusal(form, refusal)
            except services.LoginRefused as refusal:  # the code could not be sent
                form.add_error(None, refusal.message)
    else:
        pending = _pending(request)
        if pending is not None and pending.get("loan_id"):
            request.session.pop(SESSION_BORROW, None)  # that one is done: start afresh
            pending = None
        if pending:  # back from screen 2, or refused there: the farmer's own choice again
            initial = {**_terms(pending), "amount": loans_selectors.plain(Decimal(pending["amount"]))}
        else:
            initial = {
                "amount": offer.default_amount,
                "term_months": offer.default_term,
                "method": offer.default_method,
            }
        form = _borrow_form(offer, initial=initial)
        try:
            quote = _quote(status.line, initial)
        except loan_services.LoanRefused:
            quote = None
    context = {"status": status, "offer": offer, "form": form, "quote": quote, "values": _values(form)}
    return render(request, "mobile/borrow.html", context)


def _values(form: BorrowForm) -> dict:
    """The form's current amount, term and method as text, to mark the chosen options."""
    return {name: "" if form[name].value() is None else str(form[name].value()) for name in form.fields}


def _borrow_next(request: HttpRequest, terms: dict) -> HttpResponse:
    amount = Decimal(terms["amount"]).quantize(Decimal("0.01"))
    sent = services.drawdown_code_send(
        farmer=request.farmer, amount=amount, term_months=terms["term_months"], method=terms["method"]
    )
    _save_pending(
        request,
        {
            "amount": format(amount, "f"),
            "term_months": terms["term_months"],
            "method": terms["method"],
            # A new key for every confirmation screen: a double tap on it repeats this key.
            "key": str(uuid.uuid4()),
            "demo_code": sent.code if _demo_mode() else "",
            "at": timezone.now().isoformat(),
        },
    )
    return redirect("mobile-borrow-confirm")


@require_GET
@farmer_required
def borrow_preview(request: HttpRequest) -> HttpResponse:
    """The live preview: the schedule for the terms in the query string, as an HTML fragment
    (or the refusal in plain words)."""
    line = _line(request)
    if line is None:
        raise Http404
    offer = loans_selectors.borrow_offer(line=line)
    form = _borrow_form(offer, request.GET)
    quote, problem = None, ""
    if form.is_valid():
        try:
            quote = _quote(line, form.cleaned_data)
        except loan_services.LoanRefused as refusal:
            problem = _refusal_text(refusal)
    else:
        problem = " ".join(str(message) for errors in form.errors.values() for message in errors)
    return render(request, "mobile/_quote.html", {"quote": quote, "problem": problem})


# --- Borrow: screen 2 --------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@farmer_required
def borrow_confirm(request: HttpRequest) -> HttpResponse:
    pending = _pending(request)
    if pending is None:
        messages.info(request, _("请重新选择借款金额。"))
        return redirect("mobile-borrow")
    if request.method == "GET" and pending.get("loan_id"):
        return redirect("mobile-borrow-done", loan_id=pending["loan_id"])
    line = _line(request)
    form = ConfirmForm(request.POST or None, initial={"key": pending["key"]})
    if request.method == "POST" and form.is_valid():
        key = str(form.cleaned_data["key"])
        if key != pending["key"]:
            messages.error(request, _("这个页面已经过期，请重新借款。"))
            return redirect("mobile-borrow")
        try:
            _status, body = _drawdown_once(request, pending, key=key, code=form.cleaned_data["code"])
        except services.LoginRefused as refusal:
            form.add_error("code", refusal.message)
        except loan_services.LoanRefused as refusal:
            messages.error(request, _refusal_text(refusal))
            return redirect("mobile-borrow")
        except IdempotencyInProgress:
            messages.info(request, _("您的借款正在处理，请稍后在“我的借款”里查看。"))
            return redirect("mobile-loans")
        except IdempotencyError as error:
            messages.error(request, str(error.message))
            return redirect("mobile-borrow")
        else:
            pending["loan_id"] = body["loan_id"]
            _save_pending(request, pending)
            return redirect("mobile-borrow-done", loan_id=body["loan_id"])
    try:
        quote = _quote(line, _terms(pending)) if line else None
    except loan_services.LoanRefused as refusal:
        messages.error(request, _refusal_text(refusal))
        return redirect("mobile-borrow")
    if quote is None:
        return redirect("mobile-borrow")
    context = {
        "form": form,
        "quote": quote,
        "masked_phone": loans_selectors.masked_phone(request.farmer),
        "demo_code": pending.get("demo_code") if _demo_mode() else "",
        "minutes": int(services.CODE_TTL.total_seconds() // 60),
    }
    return render(request, "mobile/borrow_confirm.html", context)


def _drawdown_once(request: HttpRequest, pending: dict, *, key: str, code: str) -> tuple[int, dict]:
    farmer = request.farmer
    terms = _terms(pending)

    def run() -> tuple[int, dict]:
        # The code is checked inside the claimed key: a repeat gets the first result without
        # needing the (used-up) code again, and a wrong code releases the key for a retry.
        services.drawdown_code_verify(farmer=farmer, code=code, **terms)
        loan = loan_services.loan_drawdown(farmer=farmer, channel="mobile", **terms)
        return 201, {"loan_id": loan.pk}

    return _once(request, key=key, operation="drawdown", data=terms, run=run)


@require_POST
@farmer_required
def borrow_resend(request: HttpRequest) -> HttpResponse:
    pending = _pending(request)
    if pending is None or pending.get("loan_id"):
        return redirect("mobile-borrow")
    try:
        sent = services.drawdown_code_send(
            farmer=request.farmer,
            amount=Decimal(pending["amount"]),
            term_months=pending["term_months"],
            method=pending["method"],
        )
    except services.LoginRefused as refusal:
        messages.error(request, refusal.message)
    else:
        pending["demo_code"] = sent.code if _demo_mode() else ""
        _save_pending(request, pending)
        messages.success(request, _("新的验证码已发出，请用最新的一条。"))
    return redirect("mobile-borrow-confirm")


# --- Borrow: screen 3 --------------------------------------------------------------------------


@require_GET
@farmer_required
def borrow_done(request: HttpRequest, loan_id: int) -> HttpResponse:
    loan = _farmer_loan(request, loan_id)
    first = loan.installments.order_by("due_date", "number").first()
    context = {
        "loan": loan,
        "card": loans_selectors.loan_card(loan=loan),
        "first_due": first.due_date if first else None,
        "first_payment": loans_selectors.yuan2(first.payment) if first else "",
    }
    return render(request, "mobile/borrow_done.html", context)


# --- My loans ----------------------------------------------------------------------------------


@require_GET
@farmer_required
def loans(request: HttpRequest) -> HttpResponse:
    return render(request, "mobile/loans.html", {"cards": loans_selectors.loan_cards(farmer=request.farmer)})


@require_GET
@farmer_required
def loan(request: HttpRequest, loan_id: int) -> HttpResponse:
    page = loans_selectors.loan_page(loan=_farmer_loan(request, loan_id))
    # A fresh idempotency key per form each time the page is shown: a double tap repeats it.
    keys = {name: uuid.uuid4() for name in ("repay", "payoff", "prepay")}
    context = {"page": page, "card": page.card, "keys": keys, "prepay": PrepayForm()}
    return render(request, "mobile/loan.html", context)


def _pay(
    request: HttpRequest, loan: Loan, *, operation: str, data: dict, key: str, pay, done, paid=None
) -> HttpResponse:
    """Run one payment service once per key; say what happened on the loan's page. ``paid``:
    what the farmer paid in all, from the repayment (default: its amount)."""

    def run() -> tuple[int, dict]:
        repayment = pay()
        total = paid(repayment) if paid else repayment.amount
        return 201, {"repayment_id": repayment.pk, "amount": format(total, "f")}

    try:
        _status, body = _once(request, key=key, operation=operation, data={"loan_id": loan.pk, **data}, run=run)
    except loan_services.LoanRefused as refusal:
        messages.error(request, _refusal_text(refusal))
    except IdempotencyError as error:
        messages.error(request, str(error.message))
    else:
        messages.success(request, done(Decimal(body["amount"])))
    return redirect("mobile-loan", loan_id=loan.pk)


def _form_problem(request: HttpRequest, form, loan: Loan) -> HttpResponse:
    messages.error(request, " ".join(str(message) for errors in form.errors.values() for message in errors))
    return redirect("mobile-loan", loan_id=loan.pk)


@require_POST
@farmer_required
def loan_repay(request: HttpRequest, loan_id: int) -> HttpResponse:
    """Repay now: what has fallen due by today, the exact figure the page showed."""
    loan = _farmer_loan(request, loan_id)
    form = RepayForm(request.POST)
    if not form.is_valid():
        return _form_problem(request, form, loan)
    amount = form.cleaned_data["amount"]
    return _pay(
        request,
        loan,
        operation="repay",
        data={"amount": format(amount, "f")},
        key=str(form.cleaned_data["key"]),
        # No real bank here: the repayment is posted straight away (see the module docstring).
        pay=lambda: loan_services.loan_repay(loan=loan, amount=amount, channel="mobile"),
        done=lambda paid: _("已还款 %(amount)s 元。") % {"amount": loans_selectors.yuan2(paid)},
    )


@require_POST
@farmer_required
def loan_payoff(request: HttpRequest, loan_id: int) -> HttpResponse:
    """Pay the whole loan off today: the quoted total (a different figure is refused)."""
    loan = _farmer_loan(request, loan_id)
    form = RepayForm(request.POST)
    if not form.is_valid():
        return _form_problem(request, form, loan)
    amount = form.cleaned_data["amount"]
    return _pay(
        request,
        loan,
        operation="payoff",
        data={"amount": format(amount, "f")},
        key=str(form.cleaned_data["key"]),
        pay=lambda: loan_services.loan_payoff(loan=loan, amount=amount, channel="mobile"),
        # The payoff repayment covers what was not yet due; what had fallen due is a repayment
        # of its own. The farmer paid the quoted total (the service refuses any other figure).
        paid=lambda _repayment: amount,
        done=lambda paid: _("已全部还清，共还 %(amount)s 元。") % {"amount": loans_selectors.yuan2(paid)},
    )


@require_POST
@farmer_required
def loan_prepay(request: HttpRequest, loan_id: int) -> HttpResponse:
    """Pay part of the principal early: a shorter term or smaller installments after."""
    loan = _farmer_loan(request, loan_id)
    form = PrepayForm(request.POST)
    if not form.is_valid():
        return _form_problem(request, form, loan)
    principal, mode = form.cleaned_data["principal"], form.cleaned_data["mode"]
    return _pay(
        request,
        loan,
        operation="prepay",
        data={"principal": format(principal, "f"), "mode": mode},
        key=str(form.cleaned_data["key"]),
        pay=lambda: loan_services.loan_prepay(loan=loan, principal=principal, mode=mode, channel="mobile"),
        done=lambda paid: _("已提前还款 %(amount)s 元，还款计划已更新。") % {"amount": loans_selectors.yuan2(paid)},
    )
