"""The bank API's county endpoints on committed data (every POST runs under an
Idempotency-Key, whose claim must be committed to be seen by a concurrent repeat): quotes equal
to ``loan_schedule``, drawdowns → disbursement, repayments and their allocation, idempotent
repeats (sequential and concurrent), and schemathesis against the generated OpenAPI schema."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from decimal import Decimal
from urllib.parse import unquote, urlsplit

import pytest
import requests
import schemathesis
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.utils import timezone

from loans.models import IdempotencyRecord, Loan, Repayment
from loans.schedule import interest_to_the_day
from loans.services import loan_drawdown, payoff_quote
from platform.api.auth import signed_headers
from platform.api.services import client_create
from platform.models import IntegrationClient, LendingPartner
from tests.api_fuzz import fuzz, is_positive, live_app
from tests.conftest import in_county
from tests.loans.conftest import SCRATCH_COUNTY
from tests.platform.test_api_auth import Bank, error_of

D = Decimal
CODE = SCRATCH_COUNTY["code"]  # 411330, committed for these tests and dropped afterwards
BASE = f"/api/v1/counties/{CODE}"


@pytest.fixture
def transactional_db():
    """Shadows pytest-django's fixture of this name for this module. pytest-django sets up the
    test database only for a session with a test that uses ``db``, ``transactional_db`` or the
    ``django_db`` mark: run alone, committed-data tests would otherwise reach the development
    database. Its own fixture would flush every table afterwards, the public schema's counties
    too; ``committed_lending`` cleans up after itself instead."""


@pytest.fixture
def race(transactional_db, committed_lending):
    """(county, lending, bank): a committed county and a bank client of its lending partner."""
    county, lending = committed_lending
    created = client_create(
        name="并发测试银行", kind="bank", partner=lending.partner, counties=[county], operator="test"
    )
    try:
        yield county, lending, Bank(created.client, created.secret)
    finally:
        connections.close_all()
        # The fixture deletes the partner with raw SQL afterwards; the client must go first.
        IntegrationClient.objects.filter(pk=created.client.pk).delete()


def drawn_loan(county, lending, *, days_ago: int = 45, disbursed: bool = True) -> Loan:
    """12,000 yuan over 12 months, equal principal at 4.35%, drawn ``days_ago`` days ago:
    installment 1 (1,000.00 + 43.50 interest) has fallen due, the rest have not."""
    with in_county(county):
        farmer = lending.borrower(line="50000.00", rate="0.0435")
        start = timezone.localdate() - dt.timedelta(days=days_ago)
        loan = loan_drawdown(farmer=farmer, amount="12000", term_months=12, method="equal_principal", on=start)
        if disbursed:
            Loan.objects.filter(pk=loan.pk).update(
                disbursement=Loan.Disbursement.CONFIRMED, disbursed_at=timezone.now(), partner_reference=f"D{loan.pk}"
            )
            loan.refresh_from_db()
    return loan


def loan_schedule_json(*args: str) -> dict:
    out = io.StringIO()
    call_command("loan_schedule", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_a_quote_equals_the_loan_schedule_command(race):
    _county, _lending, bank = race
    for method in ("equal_installment", "equal_principal", "interest_only", "bullet"):
        body = {"amount": "50000", "term_months": 12, "method": method, "annual_rate": "0.0435", "start": "2026-01-31"}

        response = bank.post(f"{BASE}/quote", body, key=f"quote-{method}")

        assert response.status_code == 200, response.content
        assert response.json() == loan_schedule_json(
            "--principal",
            "50000",
            "--annual-rate",
            "0.0435",
            "--months",
            "12",
            "--method",
            method,
            "--start",
            "2026-01-31",
        )
    equal = bank.post(f"{BASE}/quote", {**body, "method": "equal_installment"}, key="quote-equal-installment-2")
    assert equal.json()["total_interest"] == "1185.94"
    # Due dates count from the start, clamped to the month's end: Feb 28, then Mar 31 (not Mar 28).
    assert [p["due_date"] for p in equal.json()["periods"][:2]] == ["2026-02-28", "2026-03-31"]


def test_a_quote_from_a_line_uses_its_rate_and_its_limits(race):
    county, lending, bank = race
    with in_county(county):
        farmer = lending.borrower(line="5000.00", rate="0.0600")
    line_id = farmer.credit_line.pk
    today = timezone.localdate().isoformat()

    quoted = bank.post(
        f"{BASE}/quote", {"amount": "3000", "term_months": 6, "method": "bullet", "line_id": line_id}, key="q-line"
    )
    too_much = bank.post(
        f"{BASE}/quote", {"amount": "6000", "term_months": 6, "method": "bullet", "line_id": line_id}, key="q-much"
    )
    both = bank.post(
        f"{BASE}/quote",
        {"amount": "3000", "term_months": 6, "method": "bullet", "line_id": line_id, "annual_rate": "0.05"},
        key="q-both",
    )
    bad_terms = bank.post(
        f"{BASE}/quote", {"amount": "0.01", "term_months": 1, "method": "bullet", "annual_rate": "0"}, key="q-bad"
    )

    assert quoted.status_code == 200
    assert quoted.json() == loan_schedule_json(
        "--principal", "3000", "--annual-rate", "0.060000", "--months", "6", "--method", "bullet", "--start", today
    )
    assert quoted.json()["total_interest"] == "90.00"
    assert too_much.status_code == 422
    assert error_of(too_much) == {
        "code": "amount_exceeds_available",
        "message": "借款金额超过可用额度 5,000.00 元",
        "message_en": "The amount exceeds the available credit of the line.",
    }
    assert both.status_code == 400
    assert error_of(both) == {
        "code": "invalid_request",
        "message": "请求参数有误，详见 fields",
        "message_en": "The request is not valid; see fields.",
        "fields": {"annual_rate": ["Give exactly one of annual_rate and line_id."]},
    }
    assert bad_terms.status_code == 200  # 0.01 yuan at 0%: a valid, if odd, schedule
    assert bad_terms.json()["total_payment"] == "0.01"


def test_every_post_needs_an_idempotency_key_and_a_key_is_for_one_request(race):
    _county, _lending, bank = race
    body = {"amount": "1000", "term_months": 3, "method": "bullet", "annual_rate": "0.05"}

    missing = bank.post(f"{BASE}/quote", body)
    first = bank.post(f"{BASE}/quote", body, key="same-key")
    reused = bank.post(f"{BASE}/quote", {**body, "amount": "2000"}, key="same-key")

    assert missing.status_code == 400
    assert error_of(missing) == {
        "code": "idempotency_key_missing",
        "message": "每个 POST 请求都需要 Idempotency-Key 请求头",
        "message_en": "Every POST needs an Idempotency-Key header.",
    }
    assert first.status_code == 200
    assert reused.status_code == 422
    assert error_of(reused) == {
        "code": "idempotency_key_reused",
        "message": "该幂等键已用于另一个请求",
        "message_en": "This idempotency key was already used for a different request",
    }


def test_drawdowns_awaiting_disbursement_and_their_confirmation(race):
    county, lending, bank = race
    loan = drawn_loan(county, lending, days_ago=0, disbursed=False)

    waiting = bank.get(f"{BASE}/drawdowns", query="status=requested")

    assert waiting.status_code == 200
    assert [row["id"] for row in waiting.json()["results"]] == [loan.pk]
    row = waiting.json()["results"][0]
    assert {key: row[key] for key in ("principal", "annual_rate", "term_months", "method", "disbursement")} == {
        "principal": "12000.00",
        "annual_rate": "0.043500",
        "term_months": 12,
        "method": "equal_principal",
        "disbursement": "requested",
    }

    confirm = {"partner_reference": "MYB-2026-0001", "disbursed_at": "2026-11-29T09:30:13+08:00"}
    first = bank.post(f"{BASE}/loans/{loan.pk}/disbursement", confirm, key="disb-1")
    repeat = bank.post(f"{BASE}/loans/{loan.pk}/disbursement", confirm, key="disb-1")
    again = bank.post(f"{BASE}/loans/{loan.pk}/disbursement", confirm, key="disb-2")
    conflict = bank.post(
        f"{BASE}/loans/{loan.pk}/disbursement", {**confirm, "partner_reference": "MYB-2026-0002"}, key="disb-3"
    )

    assert first.status_code == 200
    assert first.json()["disbursement"] == "confirmed"
    assert first.json()["partner_reference"] == "MYB-2026-0001"
    assert first.json()["disbursed_at"] == "2026-11-29T09:30:13+08:00"
    assert (repeat.status_code, repeat.json()) == (200, first.json())
    assert (again.status_code, again.json()) == (200, first.json())
    assert conflict.status_code == 409
    assert error_of(conflict) == {
        "code": "disbursement_conflict",
        "message": "这笔贷款已按流水号 MYB-2026-0001 确认放款",
        "message_en": "The disbursement was already confirmed with another partner reference.",
    }
    assert bank.get(f"{BASE}/drawdowns").json()["results"] == []
    assert [r["id"] for r in bank.get(f"{BASE}/drawdowns", query="status=confirmed").json()["results"]] == [loan.pk]
    with in_county(county):
        loan.refresh_from_db()
        assert (loan.disbursement, loan.partner_reference) == ("confirmed", "MYB-2026-0001")


def test_a_repayment_is_allocated_and_a_repeat_returns_the_same_body(race):
    county, lending, bank = race
    loan = drawn_loan(county, lending)
    path = f"{BASE}/loans/{loan.pk}/repayments"
    body = {"amount": "1043.50", "kind": "scheduled", "partner_reference": "MYB-R-0001"}

    posted = bank.post(path, body, key="repay-1")
    repeated = bank.post(path, body, key="repay-1")

    assert posted.status_code == 201, posted.content
    result = posted.json()
    assert {key: value for key, value in result.items() if key not in ("id", "created_at")} == {
        "loan_id": loan.pk,
        "kind": "scheduled",
        "amount": "1043.50",
        "to_penalty": "0.00",
        "to_interest": "43.50",
        "to_principal": "1000.00",
        "business_date": timezone.localdate().isoformat(),
        "channel": "partner",
        "partner_reference": "MYB-R-0001",
        "prepayment_mode": "",
        "loan": {
            "status": "active",
            "outstanding_principal": "11000.00",
            "interest_due": "0.00",
            "penalty_due": "0.00",
        },
    }
    assert (repeated.status_code, repeated.json()) == (201, result)
    with in_county(county):
        assert Repayment.objects.filter(loan=loan).count() == 1
        assert IdempotencyRecord.objects.get(scope=f"client:{bank.client.pk}", key="repay-1").completed

    detail = bank.get(f"{BASE}/loans/{loan.pk}").json()
    assert detail["balances"] == {
        "outstanding_principal": "11000.00",
        "interest_due": "0.00",
        "penalty_due": "0.00",
        "subsidy_due": "0.00",
    }
    assert [(i["number"], i["principal"], i["interest"], i["status"]) for i in detail["schedule"][:3]] == [
        (1, "1000.00", "43.50", "paid"),
        (2, "1000.00", "39.88", "scheduled"),
        (3, "1000.00", "36.25", "scheduled"),
    ]
    assert [r["id"] for r in detail["repayments"]] == [result["id"]]

    duplicate = bank.post(path, body, key="repay-2")
    assert duplicate.status_code == 409
    assert error_of(duplicate)["code"] == "duplicate_partner_reference"
    nothing_due = bank.post(path, {**body, "partner_reference": "MYB-R-0002"}, key="repay-3")
    assert nothing_due.status_code == 422
    assert error_of(nothing_due) == {
        "code": "nothing_due",
        "message": "目前没有到期应还的款项；如需提前还款，请选择提前还款",
        "message_en": "Nothing is due now. To pay ahead, choose early repayment",
    }


def test_overpaying_and_paying_an_undisbursed_loan_are_refused(race):
    county, lending, bank = race
    loan = drawn_loan(county, lending)
    waiting = drawn_loan(county, lending, disbursed=False)
    body = {"amount": "1043.51", "kind": "scheduled", "partner_reference": "MYB-R-0009"}

    over = bank.post(f"{BASE}/loans/{loan.pk}/repayments", body, key="over")
    undisbursed = bank.post(f"{BASE}/loans/{waiting.pk}/repayments", {**body, "amount": "10"}, key="undisbursed")

    assert over.status_code == 422
    assert error_of(over) == {
        "code": "overpayment",
        "message": "还款金额超过应还金额 1,043.50 元",
        "message_en": "The amount exceeds what is owed.",
    }
    assert (undisbursed.status_code, error_of(undisbursed)["code"]) == (422, "not_disbursed")
    # A refused request releases its key: the corrected request can use it.
    fixed = bank.post(f"{BASE}/loans/{loan.pk}/repayments", {**body, "amount": "1043.50"}, key="over")
    assert fixed.status_code == 201


def test_prepayment_then_payoff(race):
    county, lending, bank = race
    loan = drawn_loan(county, lending)
    path = f"{BASE}/loans/{loan.pk}/repayments"
    bank.post(path, {"amount": "1043.50", "kind": "scheduled", "partner_reference": "R1"}, key="p1")
    with in_county(county):
        first_due = loan.installments.get(number=1).due_date
    days = (timezone.localdate() - first_due).days

    prepaid = bank.post(
        path,
        {"amount": "3000.00", "kind": "prepayment", "partner_reference": "R2", "prepayment_mode": "shorter_term"},
        key="p2",
    )

    interest = interest_to_the_day(principal=D("11000.00"), annual_rate=D("0.0435"), days=days)
    assert prepaid.status_code == 201, prepaid.content
    assert (prepaid.json()["to_principal"], prepaid.json()["to_interest"]) == ("3000.00", f"{interest:.2f}")
    assert prepaid.json()["amount"] == f"{D('3000.00') + interest:.2f}"
    assert prepaid.json()["loan"]["outstanding_principal"] == "8000.00"

    payoff = bank.get(f"{BASE}/loans/{loan.pk}").json()["payoff"]
    with in_county(county):
        assert payoff == {"on": timezone.localdate().isoformat(), "amount": f"{payoff_quote(loan=loan).total:.2f}"}
    short = bank.post(path, {"amount": "100.00", "kind": "payoff", "partner_reference": "R3"}, key="p3")
    paid_off = bank.post(path, {"amount": payoff["amount"], "kind": "payoff", "partner_reference": "R3"}, key="p4")

    assert (short.status_code, error_of(short)["code"]) == (422, "amount_mismatch")
    assert paid_off.status_code == 201
    assert paid_off.json()["loan"] == {
        "status": "closed",
        "outstanding_principal": "0.00",
        "interest_due": "0.00",
        "penalty_due": "0.00",
    }
    assert bank.get(f"{BASE}/loans/{loan.pk}").json()["payoff"] is None


def test_another_banks_loan_is_not_found(race):
    county, lending, _bank = race
    loan = drawn_loan(county, lending)
    other = LendingPartner.objects.create(code="race-other", name="他行")
    created = client_create(name="他行", kind="bank", partner=other, counties=[county], operator="test")
    try:
        outsider = Bank(created.client, created.secret)
        response = outsider.get(f"{BASE}/loans/{loan.pk}")
        assert response.status_code == 404
        assert error_of(response) == {
            "code": "loan_not_found",
            "message": "没有这笔贷款",
            "message_en": "No such loan.",
        }
        drawdowns = outsider.get(f"{BASE}/drawdowns", query="status=confirmed")
        assert drawdowns.json()["results"] == []
    finally:
        IntegrationClient.objects.filter(pk=created.client.pk).delete()
        with in_county(county):  # the deletion looks for the partner's rows in the county too
            other.delete()


def test_two_concurrent_identical_requests_post_one_repayment(race):
    county, lending, bank = race
    loan = drawn_loan(county, lending)
    path = f"{BASE}/loans/{loan.pk}/repayments"
    body = json.dumps({"amount": "1043.50", "kind": "scheduled", "partner_reference": "MYB-RACE-1"}).encode()
    barrier = threading.Barrier(2)
    answers: list[tuple[int, dict]] = []

    def post() -> None:
        try:
            # Each thread signs its own request (its own nonce), as two retries of one bank job would.
            headers = signed_headers(key_id=bank.client.key_id, secret=bank.secret, method="POST", path=path, body=body)
            barrier.wait(timeout=10)
            response = Client().post(
                path, data=body, content_type="application/json", headers={**headers, "Idempotency-Key": "race-1"}
            )
            answers.append((response.status_code, response.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    statuses = sorted(status for status, _body in answers)
    assert statuses in ([201, 201], [201, 409]), answers
    created = [body for status, body in answers if status == 201]
    assert all(body == created[0] for body in created)
    if statuses == [201, 409]:
        assert [body["error"]["code"] for status, body in answers if status == 409] == ["idempotency_in_progress"]
    with in_county(county):
        assert Repayment.objects.filter(loan=loan).count() == 1
        assert Repayment.objects.get(loan=loan).to_principal == D("1000.00")


# --- schemathesis against the generated schema -------------------------------------------------


class HmacAuth(requests.auth.AuthBase):
    """Signs each prepared request as sent: the percent-decoded path, the raw query, the body bytes."""

    def __init__(self, bank: Bank) -> None:
        self.bank = bank

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(prepared.url)
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        prepared.headers.update(
            signed_headers(
                key_id=self.bank.client.key_id,
                secret=self.bank.secret,
                method=prepared.method,
                path=unquote(url.path),
                query=url.query,
                body=body,
            )
        )
        return prepared


@pytest.fixture
def live_api(race):
    county, lending, bank = race
    with live_app() as base_url:
        yield base_url, county, lending, bank


@pytest.fixture
def api_schema(live_api):
    base_url, county, lending, bank = live_api
    repaying = drawn_loan(county, lending)
    undisbursed = drawn_loan(county, lending, disbursed=False)
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/schema/?format=json")
    schema.config.update(base_url=base_url)
    known = {"county": CODE, "loan_id": repaying.pk, "undisbursed_loan_id": undisbursed.pk, "line_id": repaying.line_id}
    return schema, known, bank


@pytest.mark.slow
def test_the_api_conforms_to_its_schema(api_schema):
    """Every operation with generated valid and invalid requests, signed like a bank's: never a
    5xx, and every answer's status, content type and body as the schema documents (invalid
    input is refused with a 4xx)."""
    schema, known, bank = api_schema
    auth = HmacAuth(bank)
    # The department endpoints (…/data/…) answer a bank client 403 only; they are fuzzed with a
    # department client in tests/platform/test_department_api.py.
    operations = [op for op in (result.ok() for result in schema.get_all_operations()) if "/data/" not in op.label]
    assert sorted(op.label for op in operations) == [
        "GET /api/v1/counties/{county_code}/drawdowns",
        "GET /api/v1/counties/{county_code}/lines",
        "GET /api/v1/counties/{county_code}/lines/{line_id}",
        "GET /api/v1/counties/{county_code}/loans/{loan_id}",
        "POST /api/v1/counties/{county_code}/loans/{loan_id}/disbursement",
        "POST /api/v1/counties/{county_code}/loans/{loan_id}/repayments",
        "POST /api/v1/counties/{county_code}/quote",
    ]

    def prepare(case) -> None:
        # Mostly the real county and rows, so requests get past the lookups into the handlers.
        if case.path_parameters:
            if is_positive(case):
                case.path_parameters["county_code"] = known["county"]
            for name in ("loan_id", "line_id"):
                if isinstance(case.path_parameters.get(name), int) and case.path_parameters[name] % 3:
                    case.path_parameters[name] = known[name]
            if (
                case.operation.path.endswith("/disbursement")
                and case.path_parameters.get("loan_id") == known["loan_id"]
            ):
                case.path_parameters["loan_id"] = known["undisbursed_loan_id"]

    seen = fuzz(schema, operations, auth=auth, prepare=prepare)
    # The generated requests reach the handlers, not only the refusals in front of them. A
    # repayment succeeds only with the exact amount due on a disbursed loan, which generated
    # bodies hit by chance only; its 2xx path is covered by the repayment tests above.
    reached = {label for (label, status), _count in seen.items() if status < 300}
    repayments = "POST /api/v1/counties/{county_code}/loans/{loan_id}/repayments"
    assert reached - {repayments} == {op.label for op in operations} - {repayments}
    assert any(label == repayments and status < 500 for (label, status) in seen)
