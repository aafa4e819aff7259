"""Ids that are not yours, or not ids at all, in the portals' URLs and POSTs.

Another farmer's loan and consent ids, for reads and for every state-changing POST, answer 404
and change nothing — tests/counties/mobile/test_loans.py
(``test_another_farmers_loan_is_not_found_for_reads_and_writes``) and
tests/counties/mobile/test_consent.py (``test_another_farmers_consent_and_receipt_are_not_found``);
a township officer's view of another township's farmer — tests/counties/portal/test_roles.py.

Added here: ids beyond any integer column (a 25-digit id, past PostgreSQL's bigint) and zero on
every id-bearing URL of both portals answer 404, never 500; and an idempotency key copied from
another farmer's payment neither replays their result nor blocks the farmer's own payment
(keys are scoped per farmer).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from counties.models import Official
from loans.models import Repayment
from loans.services import loan_drawdown
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.counties.portal.conftest import make_official, otp_login
from tests.loans.conftest import Lending
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import activate_policy

HOST = "lankao.localhost"
HUGE = "9" * 25


def farmer_client(farmer, host: str = HOST) -> Client:
    client = Client(HTTP_HOST=host)
    session = client.session
    session["farmer_id"] = farmer.pk
    session.save()
    return client


@pytest.mark.parametrize("bad_id", [HUGE, "0"])
def test_absurd_ids_are_not_found_on_either_portal(lankao, bad_id):
    with in_county(lankao):
        farmer = make_farmer(name="编号", id_number=valid_id_number(seq=991))
        official = Client(HTTP_HOST=HOST)
        user, _official, device = make_official(Official.Role.COUNTY_ADMIN, username="ids-admin")
        otp_login(official, user, device)
        mobile = farmer_client(farmer)

        gets = [
            mobile.get(f"/m/loans/{bad_id}/"),
            mobile.get(f"/m/borrow/done/{bad_id}/"),
            mobile.get(f"/m/consent/{bad_id}/receipt/"),
            official.get(f"/portal/farmers/{bad_id}/"),
            official.get(f"/portal/data/batches/{bad_id}/"),
            official.get(f"/portal/data/batches/{bad_id}/progress"),
            official.get(f"/portal/data/batches/{bad_id}/errors.csv"),
            official.get("/portal/nightly/99999-99-99/"),
        ]
        key = str(uuid.uuid4())
        posts = [
            mobile.post(f"/m/consent/{bad_id}/revoke/"),
            mobile.post(f"/m/consent/{bad_id}/pause/"),
            mobile.post(f"/m/loans/{bad_id}/repay/", {"amount": "1.00", "key": key}),
            mobile.post(f"/m/loans/{bad_id}/payoff/", {"amount": "1.00", "key": key}),
            official.post(f"/portal/farmers/{bad_id}/", {"purpose": "farmer_request", "note": ""}),
            official.post("/portal/nightly/99999-99-99/rerun"),
        ]

    assert [response.status_code for response in gets] == [404] * len(gets)
    assert [response.status_code for response in posts] == [404] * len(posts)


# --- Another farmer's idempotency key (committed data: keys are claimed in their own commit) ----


def test_another_farmers_idempotency_key_neither_replays_nor_blocks(scratch_county):
    county = scratch_county("hostile-b")
    with schema_context(county.schema_name):
        partner = credit_partner("hostile-b-bank")
        lending = Lending(partner, activate_policy(partner), timezone.localdate())
        start = timezone.localdate() - dt.timedelta(days=45)  # one installment has fallen due
        owner, other = lending.borrower(name="甲"), lending.borrower(name="乙")
        theirs = loan_drawdown(farmer=owner, amount="12000", term_months=12, method="equal_principal", on=start)
        mine = loan_drawdown(farmer=other, amount="12000", term_months=12, method="equal_principal", on=start)
        host = county.domains.get().domain
        key = str(uuid.uuid4())

        paid = farmer_client(owner, host).post(f"/m/loans/{theirs.pk}/repay/", {"amount": "1043.50", "key": key})
        copied = farmer_client(other, host).post(f"/m/loans/{mine.pk}/repay/", {"amount": "1043.50", "key": key})

        assert (paid.status_code, copied.status_code) == (302, 302)
        assert copied["Location"] == f"/m/loans/{mine.pk}/"
        assert Repayment.objects.filter(loan=theirs).count() == 1
        assert Repayment.objects.filter(loan=mine).count() == 1  # their own payment, not the other's result
