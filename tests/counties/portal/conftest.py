"""Fixtures for the officials' portal: officials of each role with a TOTP device, logged in
with both factors (or only the password), and a small county with two townships."""

from __future__ import annotations

import itertools
import shutil

import pytest
from django.contrib.auth import get_user_model
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from counties.models import Official, Township, Village
from tests.conftest import in_county, make_farmer, valid_id_number

HOST = "lankao.localhost"
OTHER_HOST = "jinzhai.localhost"
PASSWORD = "portal-pass-8231"
_seq = itertools.count(1)


def make_official(role: str, *, username: str | None = None, township=None, device: bool = True):
    """A user + Official in the current schema; with a confirmed TOTP device unless ``device``
    is False. Returns (user, official, device or None)."""
    username = username or f"{role}-{next(_seq)}"
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    official = Official.objects.create(user=user, role=role, township=township)
    totp_device = TOTPDevice.objects.create(user=user, name="portal", confirmed=True) if device else None
    return user, official, totp_device


def code_for(device: TOTPDevice, *, offset_steps: int = 0) -> str:
    """The code an authenticator app shows now (django_otp.oath.totp with the device's key);
    ``offset_steps`` asks for the code of an earlier or later 30-second step."""
    value = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift + offset_steps)
    return f"{value:0{device.digits}d}"


def otp_login(client, user, device) -> None:
    """Log ``user`` in with both factors without going through the forms (the session is
    stored in the county's schema, where the caller runs)."""
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


class Portal:
    """Logs officials of a role into ``client`` (one at a time) on the county's host."""

    def __init__(self, client, townships: dict[str, Township]):
        self.client = client
        self.townships = townships

    def login(self, role: str, *, township: Township | None = None, username: str | None = None):
        if role == Official.Role.TOWNSHIP_OFFICER and township is None:
            township = self.townships["east"]
        user, official, device = make_official(role, username=username, township=township)
        otp_login(self.client, user, device)
        return official

    def get(self, path: str, **params):
        return self.client.get(path, params, HTTP_HOST=HOST)

    def post(self, path: str, data: dict | None = None):
        return self.client.post(path, data or {}, HTTP_HOST=HOST)


def make_townships() -> dict[str, Township]:
    east = Township.objects.create(code="410225801", name="东坝头镇")
    west = Township.objects.create(code="410225802", name="西坝头镇")
    Village.objects.create(township=east, code="410225801001", name="张庄村")
    Village.objects.create(township=east, code="410225801002", name="李庄村")
    Village.objects.create(township=west, code="410225802001", name="王庄村")
    return {"east": east, "west": west}


@pytest.fixture
def townships(lankao):
    with in_county(lankao):
        yield make_townships()


@pytest.fixture
def portal(lankao, client, townships):
    with in_county(lankao):
        yield Portal(client, townships)


def farmer_in(village_code: str, name: str, seq: int, phone: str = ""):
    return make_farmer(
        name=name, id_number=valid_id_number(seq=seq), phone=phone, village=Village.objects.get(code=village_code)
    )


def chromium_available() -> bool:
    return shutil.which("chromium") is not None or shutil.which("/usr/bin/chromium") is not None


# --- A small loan book ------------------------------------------------------------------------


class Book:
    """Farmers, consents, lines and loans across the two townships, with every case the
    dashboard must count or leave out: a revoked consent, a farmer consenting to two partners,
    a suspended line, closed and written-off loans, each five-category class."""

    def __init__(self, townships):
        import datetime as dt
        from decimal import Decimal

        from django.utils import timezone

        from data_sharing.services import consent_revoke
        from loans.models import CreditLine, Loan
        from tests.data_sharing.test_consent import grant, make_agreement, make_partner

        self.townships = townships
        self.today = timezone.localdate()
        self.partner = make_partner("portal-bank", "普惠测试银行")
        make_agreement(self.partner)
        other_partner = make_partner("portal-bank-2", "第二银行")
        make_agreement(other_partner)
        self.farmers = {}

        def farmer(key, village, name, seq, phone=""):
            self.farmers[key] = farmer_in(village, name, seq, phone)
            return self.farmers[key]

        def line(who, amount, used, status=CreditLine.Status.ACTIVE):
            return CreditLine.objects.create(
                farmer=who, amount=Decimal(amount), outstanding_principal=Decimal(used), grade="B",
                annual_rate=Decimal("0.0435"), valid_until=self.today + dt.timedelta(days=300),
                business_date=self.today, status=status,
                suspension="" if status == CreditLine.Status.ACTIVE else CreditLine.Suspension.NO_CONSENT,
            )

        def loan(who, credit_line, principal, outstanding, dpd=0, classification="normal", status="active"):
            return Loan.objects.create(
                farmer=who, line=credit_line, partner=self.partner, principal=Decimal(principal),
                annual_rate=Decimal("0.0435"), penalty_rate=Decimal("0.06525"), term_months=12,
                method="equal_installment", start_date=self.today - dt.timedelta(days=200),
                maturity_date=self.today + dt.timedelta(days=165), outstanding_principal=Decimal(outstanding),
                days_past_due=dpd, max_days_past_due=dpd, classification=classification, status=status,
                last_closed_date=self.today,
            )

        a1 = farmer("a1", "410225801001", "张大", 811, phone="13800138001")
        a2 = farmer("a2", "410225801001", "张二", 812)
        a3 = farmer("a3", "410225801001", "张三丰", 813)
        farmer("a4", "410225801001", "张四", 814)
        b1 = farmer("b1", "410225801002", "李一", 821, phone="13900139002")
        b2 = farmer("b2", "410225801002", "李二", 822)
        c1 = farmer("c1", "410225802001", "王一", 831)
        c2 = farmer("c2", "410225802001", "王二", 832)

        for who in (a1, a2, b1, b2, c1):
            grant(who, self.partner)
        grant(b2, other_partner)  # two active consents, one farmer
        consent_revoke(consent=grant(a3, self.partner), actor="farmer")
        grant(c2, other_partner)
        consent_revoke(consent=c2.consents.get(), actor="farmer")

        line_a1 = line(a1, "50000.00", "20000.00")
        line_a2 = line(a2, "30000.00", "10000.00")
        line(a3, "10000.00", "0.00", status=CreditLine.Status.SUSPENDED)
        line_b1 = line(b1, "80000.00", "55000.00")
        line(b2, "1000.00", "0.00")
        line_c1 = line(c1, "20000.00", "5000.00")
        line_c2 = line(c2, "6000.00", "3000.00", status=CreditLine.Status.SUSPENDED)

        self.loans = {
            "a1": loan(a1, line_a1, "20000.00", "18000.50"),
            "a2": loan(a2, line_a2, "10000.00", "9000.25", dpd=35, classification="special_mention"),
            "b1_bad": loan(b1, line_b1, "40000.00", "40000.00", dpd=120, classification="substandard"),
            "b1_ok": loan(b1, line_b1, "15000.00", "15000.00"),
            "b1_closed": loan(b1, line_b1, "5000.00", "0.00", status="closed"),
            "b1_doubtful": loan(b1, line_b1, "1000.00", "999.99", dpd=200, classification="doubtful"),
            "c1": loan(c1, line_c1, "5000.00", "5000.00", dpd=400, classification="loss"),
            "c2_written_off": loan(c2, line_c2, "3000.00", "3000.00", dpd=500, classification="loss", status="written_off"),
        }


@pytest.fixture
def book(portal):
    return Book(portal.townships)
