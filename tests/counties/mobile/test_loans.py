"""Borrowing and repaying on the farmer portal: the borrow screen's defaults and live preview
(exact figures), refusals on screen 1 with the inputs kept, the SMS confirmation (wrong,
expired, bound to the terms), one loan for a double submit (sequential and concurrent), my
loans, repay now, early payoff, partial prepayment, another farmer's loan answering 404, the
home page's loan messages, and page weights.

Drawing and repaying run under :func:`loans.idempotency.idempotent`, which must commit its claim
before the work (a concurrent repeat has to see it), so it refuses to run inside a transaction
— and pytest-django's ``db`` runs each test in one. These tests therefore run on committed data
in a throwaway county onboarded once for the module and dropped afterwards (the ledger refuses
DELETE, so its schema goes whole); each test has farmers of its own.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from counties.mobile import loans_views
from counties.mobile.auth import SESSION_FARMER
from counties.models import SmsLoginCode
from data_sharing.pii import blind_index, encrypt
from loans.models import CreditLine, IdempotencyRecord, Installment, Loan, OutboxMessage, Repayment
from loans.services import installments_fall_due, loan_drawdown, payoff_quote
from platform.models import County, Domain, LendingPartner
from platform.services import county_onboard
from platform.sms import sms_outbox
from tests.conftest import COUNTY_ADMIN_PASSWORD
from tests.counties.mobile.conftest import errors
from tests.counties.mobile.test_pages import PAGE_BUDGET, weight
from tests.loans.conftest import Lending
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import activate_policy

# A code and domain no other test uses: this county is committed while the module runs.
COUNTY = {
    "code": "130126",
    "name": "灵寿县",
    "domain": "lingshou-loans.localhost",
    "province": "河北省",
    "city": "石家庄市",
}
HOST = COUNTY["domain"]
PARTNER_CODE = "mobile-loans-bank"
PHONES = (f"1580000{n:04d}" for n in itertools.count(1))
D = Decimal


@pytest.fixture
def transactional_db():
    """Shadows pytest-django's fixture (as tests/loans/test_api.py does): asking for it makes
    pytest-django set up the test database when this module runs alone, without its flush,
    which would empty the public schema's county registry."""


def _drop_county() -> None:
    connection.set_schema_to_public()
    Domain.objects.filter(tenant__code=COUNTY["code"]).delete()
    for county in County.objects.filter(code=COUNTY["code"]):
        county.delete(force_drop=True)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {LendingPartner._meta.db_table} WHERE code = %s", [PARTNER_CODE])


@pytest.fixture(scope="module")
def committed_county(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        _drop_county()  # left over by a run that was killed (with --reuse-db)
        county = county_onboard(**COUNTY, admin_password=COUNTY_ADMIN_PASSWORD).county
        try:
            with schema_context(county.schema_name):
                partner = credit_partner(PARTNER_CODE)
                lending = Lending(partner, activate_policy(partner), timezone.localdate())
            yield county, lending
        finally:
            connections.close_all()
            _drop_county()


@pytest.fixture
def lending(committed_county, transactional_db):
    county, lending = committed_county
    with schema_context(county.schema_name):
        yield lending


def borrower(lending: Lending, *, line: str = "50000.00", rate: str = "0.0435", name: str = "借款人"):
    """A consenting farmer with an active line and a phone of their own."""
    farmer = lending.borrower(line=line, rate=rate, name=name)
    phone = next(PHONES)
    farmer.phone_encrypted, farmer.phone_hash = encrypt(phone), blind_index(phone)
    farmer.save(update_fields=["phone_encrypted", "phone_hash"])
    farmer.phone = phone  # for the tests
    return farmer


def logged_in(farmer) -> Client:
    client = Client(HTTP_HOST=HOST)
    session = client.session
    session[SESSION_FARMER] = farmer.pk
    session.save()
    return client


def drawn(farmer, *, days_ago: int = 0, amount: str = "12000", months: int = 12, method: str = "equal_principal"):
    start = timezone.localdate() - dt.timedelta(days=days_ago)
    return loan_drawdown(farmer=farmer, amount=amount, term_months=months, method=method, on=start)


def code_in_sms(phone: str) -> str:
    return re.search(r"\d{6}", sms_outbox(phone=phone)[-1]["text"]).group()


def text(response) -> str:
    """The page's visible words, tags stripped, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def to_confirm(client, terms: dict | None = None):
    terms = terms or {"amount": "12000", "term_months": "12", "method": "equal_principal"}
    response = client.post("/m/borrow/", {**terms, "next": "1"})
    assert response.status_code == 302 and response["Location"] == "/m/borrow/confirm/", errors(response)
    return client.get("/m/borrow/confirm/")


def confirm_key(page) -> str:
    return re.search(r'name="key" value="([0-9a-f-]{36})"', page.content.decode()).group(1)


# --- Screen 1: amount, term, method, live preview -------------------------------------------------


def test_the_borrow_screen_starts_with_a_sensible_amount_and_every_product(lending):
    farmer = borrower(lending, line="32300.00", rate="0.06")
    page = logged_in(farmer).get("/m/borrow/")
    html = page.content.decode()

    assert page.status_code == 200
    assert 'name="amount" value="10000"' in html
    assert re.findall(r'name="pick" value="([\d.]+)"', html) == ["3000", "5000", "10000", "32300"]
    assert "全部 32,300" in html
    assert re.findall(r'name="term_months" value="(\d+)"( checked)?', html) == [
        ("3", ""),
        ("6", ""),
        ("9", ""),
        ("12", " checked"),
    ]
    assert re.findall(r'name="method" value="(\w+)"', html) == [
        "equal_installment",
        "equal_principal",
        "interest_only",
        "bullet",
    ]
    words = text(page)
    assert "可用额度 32,300 元，年利率 6%。" in words
    assert "等额本息 每个月还一样多，好记好安排。" in words
    assert "到期一次还本付息 中间不用还，到期一次还清本金和利息。" in words
    # The preview of the prefilled terms is on the page already (no JavaScript needed).
    assert 'id="first-payment"' in html and 'data-preview="/m/borrow/preview/"' in html


def test_the_live_preview_shows_the_exact_schedule_of_the_line(lending):
    farmer = borrower(lending, line="50000.00", rate="0.0435")
    client = logged_in(farmer)

    fragment = client.get("/m/borrow/preview/", {"amount": "12000", "term_months": "12", "method": "equal_principal"})

    html = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in html  # a fragment, not a page
    assert re.search(r'id="first-payment">([^<]+)<', html).group(1) == "1,043.50 元"
    assert re.search(r'id="apr">([^<]+)<', html).group(1) == "4.35%"
    assert re.search(r'id="total-interest">([^<]+)<', html).group(1) == "282.78 元"
    plan = re.findall(r"<li><span>([^<]+)</span><strong>([^<]+)</strong></li>", html)
    assert len(plan) == 12
    assert [payment for _day, payment in plan[:3]] == ["1,043.50 元", "1,039.88 元", "1,036.25 元"]
    assert plan[-1][1] == "1,003.63 元"
    assert "每期还多少（12 期，共 12,282.78 元）" in html


def test_the_preview_says_in_plain_words_what_is_wrong(lending):
    farmer = borrower(lending, line="5000.00")
    client = logged_in(farmer)

    too_much = client.get("/m/borrow/preview/", {"amount": "6000", "term_months": "6", "method": "bullet"})
    too_little = client.get("/m/borrow/preview/", {"amount": "500", "term_months": "6", "method": "bullet"})
    not_a_number = client.get("/m/borrow/preview/", {"amount": "abc", "term_months": "6", "method": "bullet"})

    assert "借款金额超过可用额度 5,000.00 元" in too_much.content.decode()
    assert "每笔借款至少 1,000 元" in too_little.content.decode()
    assert "请输入借款金额，例如 10000。" in not_a_number.content.decode()


def test_preview_and_quick_picks_work_without_javascript(lending):
    farmer = borrower(lending)
    client = logged_in(farmer)

    previewed = client.post(
        "/m/borrow/", {"amount": "12,000", "term_months": "12", "method": "equal_principal", "preview": "1"}
    )
    picked = client.post("/m/borrow/", {"amount": "12000", "term_months": "6", "method": "bullet", "pick": "5000"})

    assert previewed.status_code == 200
    assert re.search(r'id="first-payment">([^<]+)<', previewed.content.decode()).group(1) == "1,043.50 元"
    assert 'name="amount" value="5000"' in picked.content.decode()
    assert re.search(r'id="first-payment">([^<]+)<', picked.content.decode()).group(1) == "5,108.75 元"
    assert sms_outbox(phone=farmer.phone) == []  # previews send nothing


def test_a_refusal_is_shown_on_screen_one_with_the_inputs_kept(lending):
    farmer = borrower(lending, line="50000.00")
    client = logged_in(farmer)

    response = client.post("/m/borrow/", {"amount": "60000", "term_months": "6", "method": "bullet", "next": "1"})

    html = response.content.decode()
    assert response.status_code == 200
    assert errors(response) == ["借款金额超过可用额度 50,000.00 元"]
    assert 'name="amount" value="60000"' in html
    assert 'name="term_months" value="6" checked' in html
    assert 'name="method" value="bullet" checked' in html
    assert sms_outbox(phone=farmer.phone) == [] and not Loan.objects.filter(farmer=farmer).exists()


def test_no_borrow_form_without_an_active_line(lending):
    farmer = borrower(lending)
    CreditLine.objects.filter(farmer=farmer).update(status=CreditLine.Status.SUSPENDED)

    page = logged_in(farmer).get("/m/borrow/")

    assert page.status_code == 200
    assert 'name="amount"' not in page.content.decode()
    assert 'id="closed"' in page.content.decode()


def test_borrowing_needs_a_login():
    response = Client(HTTP_HOST=HOST).get("/m/borrow/")
    assert response.status_code == 302 and response["Location"] == "/m/login/"


# --- Screen 2: the SMS code -------------------------------------------------------------------------


def test_next_sends_a_code_naming_the_loan_and_shows_the_terms_again(lending):
    farmer = borrower(lending)
    client = logged_in(farmer)

    page = to_confirm(client)

    sms = sms_outbox(phone=farmer.phone)
    assert len(sms) == 1
    assert "借款确认码" in sms[0]["text"] and "12,000.00 元，12 个月" in sms[0]["text"]
    words = text(page)
    assert "12,000 元" in words and "等额本金" in words and "1,043.50 元" in words and "4.35%" in words
    assert re.search(r'id="demo-code">(\d{6})<', page.content.decode()).group(1) == code_in_sms(farmer.phone)
    assert f"验证码已发到 {farmer.phone[:3]}****{farmer.phone[-4:]}" in words


def test_a_wrong_or_expired_code_is_refused_and_makes_no_loan(lending):
    farmer = borrower(lending)
    client = logged_in(farmer)
    key = confirm_key(to_confirm(client))
    code = code_in_sms(farmer.phone)
    wrong = "000000" if code != "000000" else "111111"

    refused = client.post("/m/borrow/confirm/", {"code": wrong, "key": key})
    SmsLoginCode.objects.filter(used_at__isnull=True).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    expired = client.post("/m/borrow/confirm/", {"code": code, "key": key})

    assert refused.status_code == 200 and errors(refused) == ["验证码不对，还可以再试 4 次。"]
    assert expired.status_code == 200 and errors(expired) == ["验证码已过期（5 分钟内有效），请重新获取。"]
    assert not Loan.objects.filter(farmer=farmer).exists()
    # A refused run releases its idempotency key: the farmer may try again with a new code.
    assert not IdempotencyRecord.objects.filter(scope=f"farmer:{farmer.pk}").exists()
    client.post("/m/borrow/resend/")
    done = client.post("/m/borrow/confirm/", {"code": code_in_sms(farmer.phone), "key": key})
    assert done.status_code == 302 and Loan.objects.filter(farmer=farmer).count() == 1


def test_a_code_confirms_only_the_terms_it_was_sent_for(lending):
    farmer = borrower(lending)
    client = logged_in(farmer)
    key = confirm_key(to_confirm(client))
    session = client.session
    session[loans_views.SESSION_BORROW] = {**session[loans_views.SESSION_BORROW], "amount": "40000.00"}
    session.save()

    response = client.post("/m/borrow/confirm/", {"code": code_in_sms(farmer.phone), "key": key})

    assert errors(response) == ["验证码不对，还可以再试 4 次。"]
    assert not Loan.objects.filter(farmer=farmer).exists()


def test_a_login_code_does_not_confirm_a_loan(lending):
    farmer = borrower(lending)
    client = logged_in(farmer)
    key = confirm_key(to_confirm(client))
    Client(HTTP_HOST=HOST).post("/m/login/", {"phone": farmer.phone})  # a login code, sent last

    response = client.post("/m/borrow/confirm/", {"code": code_in_sms(farmer.phone), "key": key})

    assert response.status_code == 200 and "验证码不对" in errors(response)[0]
    assert not Loan.objects.filter(farmer=farmer).exists()


# --- Screen 3, and one loan for a double submit -----------------------------------------------------


def test_a_confirmed_borrow_makes_exactly_one_loan_even_when_submitted_twice(lending):
    farmer = borrower(lending)
    client = logged_in(farmer)
    key = confirm_key(to_confirm(client))
    code = code_in_sms(farmer.phone)

    first = client.post("/m/borrow/confirm/", {"code": code, "key": key})
    second = client.post("/m/borrow/confirm/", {"code": code, "key": key})

    loan = Loan.objects.get(farmer=farmer)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == f"/m/borrow/done/{loan.pk}/"
    assert (loan.principal, loan.term_months, loan.method) == (D("12000.00"), 12, "equal_principal")
    assert OutboxMessage.objects.filter(loan=loan, topic="drawdown.requested").count() == 1
    record = IdempotencyRecord.objects.get(scope=f"farmer:{farmer.pk}", key=key)
    assert (record.operation, record.completed, record.response) == ("drawdown", True, {"loan_id": loan.pk})

    done = client.get(first["Location"])
    words = text(done)
    assert "钱正在路上" in words and "12,000 元" in words
    first_due = loan.installments.order_by("due_date").first().due_date
    assert re.search(r'id="first-payment">([^<]+)<', done.content.decode()).group(1) == "1,043.50 元"
    assert f"{first_due.year}年{first_due.month}月{first_due.day}日" in words
    # Back from the result: the confirmation page sends the farmer to the result, not a new loan.
    assert client.get("/m/borrow/confirm/")["Location"] == f"/m/borrow/done/{loan.pk}/"


def test_a_concurrent_double_tap_makes_one_loan(lending):
    farmer = borrower(lending)
    client = logged_in(farmer)
    key = confirm_key(to_confirm(client))
    code = code_in_sms(farmer.phone)
    cookies = client.cookies
    answers: list = []
    barrier = threading.Barrier(2)

    def tap() -> None:
        tapper = Client(HTTP_HOST=HOST)
        tapper.cookies.update(cookies)
        try:
            barrier.wait()
            answers.append(tapper.post("/m/borrow/confirm/", {"code": code, "key": key}))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=tap) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    loan = Loan.objects.get(farmer=farmer)
    assert [answer.status_code for answer in answers] == [302, 302]
    assert {answer["Location"] for answer in answers} == {f"/m/borrow/done/{loan.pk}/"}


def test_a_refusal_at_confirmation_goes_back_to_screen_one_with_the_inputs(lending):
    farmer = borrower(lending, line="20000.00")
    client = logged_in(farmer)
    key = confirm_key(to_confirm(client, {"amount": "15000", "term_months": "9", "method": "interest_only"}))
    drawn(farmer, amount="10000")  # meanwhile, another loan uses most of the line

    response = client.post("/m/borrow/confirm/", {"code": code_in_sms(farmer.phone), "key": key}, follow=True)

    html = response.content.decode()
    assert response.redirect_chain == [("/m/borrow/", 302)]
    assert errors(response) == ["借款金额超过可用额度 10,000.00 元"]
    assert 'name="amount" value="15000"' in html
    assert 'name="term_months" value="9" checked' in html and 'name="method" value="interest_only" checked' in html
    assert Loan.objects.filter(farmer=farmer).count() == 1


# --- My loans -----------------------------------------------------------------------------------------


def test_my_loans_list_each_loan_in_plain_words(lending):
    farmer = borrower(lending)
    due = drawn(farmer, days_ago=45)  # installment 1 (1,043.50) has come
    fresh = drawn(farmer, amount="3000", months=6, method="equal_installment")
    client = logged_in(farmer)

    page = client.get("/m/loans/")

    html = page.content.decode()
    assert page.status_code == 200
    due_card = re.search(rf'id="loan-{due.pk}".*?</section>', html, flags=re.S).group()
    fresh_card = re.search(rf'id="loan-{fresh.pk}".*?</section>', html, flags=re.S).group()
    assert 'data-state="due"' in due_card and "今天要还 1,043.50 元" in due_card
    assert "等额本金" in due_card and "4.35%" in due_card and "12,000.00 元" in due_card
    assert 'data-state="active"' in fresh_card and "还款中，没有逾期" in fresh_card and "等额本息" in fresh_card
    next_due = fresh.installments.order_by("due_date").first()
    assert f"{next_due.due_date.month}月{next_due.due_date.day}日" in fresh_card
    assert f"{next_due.payment:,.2f} 元" in fresh_card
    assert f'href="/m/loans/{due.pk}/"' in html


def test_a_loan_page_shows_the_schedule_with_marks_and_words(lending):
    farmer = borrower(lending)
    loan = drawn(farmer, days_ago=45)
    client = logged_in(farmer)

    page = client.get(f"/m/loans/{loan.pk}/")

    html = page.content.decode()
    rows = re.findall(
        r'<li class="(\w+)" data-status="\w+">.*?<span class="mark-label">(.*?)</span>\s*</li>', html, re.S
    )
    assert len(rows) == 12
    assert rows[0][0] == "due" and "●" in rows[0][1] and "已到期" in rows[0][1]
    assert all(status == "scheduled" and "未到期" in label for status, label in rows[1:])
    assert re.search(r'id="due-now">([^<]+)<', html).group(1) == "1,043.50 元"
    quote = payoff_quote(loan=loan)
    assert re.search(r'id="payoff-total">([^<]+)<', html).group(1) == f"{quote.total:,.2f} 元"
    assert re.search(r'id="payoff-interest">([^<]+)<', html).group(1) == f"{quote.interest_to_day:,.2f} 元"
    assert re.search(r'id="payoff-principal">([^<]+)<', html).group(1) == "11,000.00 元"


def test_repay_now_pays_what_has_fallen_due_once(lending):
    farmer = borrower(lending)
    loan = drawn(farmer, days_ago=45)
    client = logged_in(farmer)
    page = client.get(f"/m/loans/{loan.pk}/").content.decode()
    form = re.search(r'action="/m/loans/\d+/repay/".*?</form>', page, re.S).group()
    data = dict(re.findall(r'name="(amount|key)" value="([^"]+)"', form))

    first = client.post(f"/m/loans/{loan.pk}/repay/", data, follow=True)
    again = client.post(f"/m/loans/{loan.pk}/repay/", data, follow=True)

    assert data["amount"] == "1043.50"
    assert errors(first) == ["已还款 1,043.50 元。"] == errors(again)
    repayment = Repayment.objects.get(loan=loan)  # one, though posted twice
    assert (repayment.amount, repayment.channel, repayment.kind) == (D("1043.50"), "mobile", "scheduled")
    first_period = loan.installments.order_by("due_date").first()
    assert first_period.status == Installment.Status.PAID
    html = again.content.decode()
    assert re.search(r'<li class="paid" data-status="paid">.*?✓.*?已还清', html, re.S)
    assert "现在没有要还的钱" in text(again)


def test_early_payoff_pays_the_quote_for_today_and_closes_the_loan(lending):
    farmer = borrower(lending)
    loan = drawn(farmer, days_ago=45)
    client = logged_in(farmer)
    quote = payoff_quote(loan=loan)
    page = client.get(f"/m/loans/{loan.pk}/").content.decode()
    form = re.search(r'action="/m/loans/\d+/payoff/".*?</form>', page, re.S).group()
    data = dict(re.findall(r'name="(amount|key)" value="([^"]+)"', form))

    wrong = client.post(f"/m/loans/{loan.pk}/payoff/", {**data, "amount": "12000.00"}, follow=True)
    paid = client.post(f"/m/loans/{loan.pk}/payoff/", data, follow=True)

    assert D(data["amount"]) == quote.total == D("1043.50") + D("11000.00") + quote.interest_to_day
    assert errors(wrong) == [f"提前结清应还 {quote.total:,} 元"]
    assert errors(paid) == [f"已全部还清，共还 {quote.total:,.2f} 元。"]
    loan.refresh_from_db()
    assert loan.status == Loan.Status.CLOSED and loan.outstanding_principal == 0
    assert sum(r.amount for r in Repayment.objects.filter(loan=loan)) == quote.total
    assert 'data-state="closed"' in paid.content.decode() and "还清" in text(paid)
    assert 'action="/m/loans/' not in paid.content.decode()  # nothing left to pay


def test_partial_prepayment_with_a_shorter_term(lending):
    farmer = borrower(lending)
    loan = drawn(farmer, amount="12000", months=12, method="equal_installment")
    client = logged_in(farmer)
    page = client.get(f"/m/loans/{loan.pk}/").content.decode()
    key = re.search(r'action="/m/loans/\d+/prepay/".*?name="key" value="([^"]+)"', page, re.S).group(1)

    response = client.post(
        f"/m/loans/{loan.pk}/prepay/", {"principal": "6000", "mode": "shorter_term", "key": key}, follow=True
    )

    assert errors(response) == ["已提前还款 6,000.00 元，还款计划已更新。"]
    repayment = Repayment.objects.get(loan=loan)
    assert (repayment.kind, repayment.prepayment_mode, repayment.to_principal) == (
        "prepayment",
        "shorter_term",
        D("6000.00"),
    )
    loan.refresh_from_db()
    assert loan.installments.filter(status=Installment.Status.SCHEDULED).count() < 12


def test_another_farmers_loan_is_not_found_for_reads_and_writes(lending):
    owner, other = borrower(lending, name="甲"), borrower(lending, name="乙")
    loan = drawn(owner, days_ago=45)
    client = logged_in(other)
    payment = {"amount": "1043.50", "key": "5b0f6f39-9d5c-4d4b-a1a4-1f1e7c0f6a11"}

    answers = [
        client.get(f"/m/loans/{loan.pk}/").status_code,
        client.get(f"/m/borrow/done/{loan.pk}/").status_code,
        client.post(f"/m/loans/{loan.pk}/repay/", payment).status_code,
        client.post(f"/m/loans/{loan.pk}/payoff/", payment).status_code,
        client.post(
            f"/m/loans/{loan.pk}/prepay/", {**payment, "principal": "1000", "mode": "shorter_term"}
        ).status_code,
    ]

    assert answers == [404] * 5
    assert not Repayment.objects.filter(loan=loan).exists()
    assert f"/m/loans/{loan.pk}/" not in client.get("/m/loans/").content.decode()


# --- Home messages ------------------------------------------------------------------------------------


def test_home_says_when_a_payment_is_due_soon_and_when_a_loan_is_overdue(lending):
    soon, late = borrower(lending, name="快到期"), borrower(lending, name="逾期")
    soon_loan = drawn(soon, days_ago=25)  # the first payment is due in 3 to 6 days
    late_loan = drawn(late, days_ago=45)
    installments_fall_due(loan=late_loan, on=timezone.localdate())
    Installment.objects.filter(loan=late_loan, status=Installment.Status.DUE).update(status=Installment.Status.OVERDUE)
    Loan.objects.filter(pk=late_loan.pk).update(days_past_due=15)

    soon_home = logged_in(soon).get("/m/").content.decode()
    late_home = logged_in(late).get("/m/").content.decode()

    first = soon_loan.installments.order_by("due_date").first()
    due_text = f"{first.due_date.year}年{first.due_date.month}月{first.due_date.day}日 要还 1,043.50 元，请提前准备。"
    assert re.search(r'<li class="warn" data-key="loan_due">([^<]+)', soon_home).group(1).strip() == due_text
    assert re.search(r'<li class="alert" data-key="loan_overdue">([^<]+)', late_home).group(1).strip() == (
        "您有一笔借款已逾期 15 天，请尽快还款。逾期会多收罚息，也会影响额度。"
    )
    assert 'href="/m/loans/">去还款</a>' in late_home


# --- Language and weight ------------------------------------------------------------------------------


def test_the_borrow_screens_in_english(lending):
    farmer = borrower(lending)
    client = logged_in(farmer)
    client.cookies["django_language"] = "en"

    borrow = text(client.get("/m/borrow/"))
    fragment = text(client.get("/m/borrow/preview/", {"amount": "60000", "term_months": "12", "method": "bullet"}))

    assert "Equal principal" in borrow and "Step 1 of 3" in borrow
    assert "The same payment every month" in borrow
    assert "more than your available credit" in fragment


def test_every_borrowing_page_is_under_100_kb(lending):
    farmer = borrower(lending)
    client = logged_in(farmer)
    old = drawn(farmer, days_ago=45)
    pages = {"borrow": client.get("/m/borrow/"), "confirm": to_confirm(client)}
    key = confirm_key(pages["confirm"])
    done = client.post("/m/borrow/confirm/", {"code": code_in_sms(farmer.phone), "key": key})
    pages |= {
        "done": client.get(done["Location"]),
        "loans": client.get("/m/loans/"),
        "loan": client.get(f"/m/loans/{old.pk}/"),
    }

    for name, response in pages.items():
        assert response.status_code == 200, name
        total, assets = weight(client, response)
        assert total < PAGE_BUDGET, (name, total)
        assert assets == ["/static/mobile/mobile.css", "/static/mobile/mobile.js"], name
        html = response.content.decode()
        for form in re.findall(r'<form method="post".*?</form>', html, flags=re.S):
            assert 'name="csrfmiddlewaretoken"' in form, name
