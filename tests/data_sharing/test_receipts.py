"""Signed consent receipts: exact content (masked ID only), canonical JSON, verification,
tampering, key rotation, the published public keys and the verify_receipt command."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from data_sharing.receipts import (
    canonical_json,
    consent_text_sha256,
    public_keys,
    receipt_document,
    receipt_verify,
)
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.data_sharing.test_consent import grant, local, make_agreement, make_partner

SEED_1 = bytes(range(32))
SEED_2 = bytes(range(100, 132))
KEY_1 = "r1:" + base64.b64encode(SEED_1).decode()
KEY_2 = "r2:" + base64.b64encode(SEED_2).decode()


def public_b64(seed: bytes) -> str:
    raw = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@pytest.fixture
def world(lankao):
    with in_county(lankao):
        partner = make_partner()
        make_agreement(partner)
        id_number = valid_id_number(seq=777)
        yield {"partner": partner, "farmer": make_farmer(id_number=id_number), "id_number": id_number}


def test_canonical_json_is_sorted_compact_utf8():
    assert canonical_json({"b": 1, "a": "兰考", "c": [2, 1]}) == '{"a":"兰考","b":1,"c":[2,1]}'.encode()


@override_settings(CONSENT_SIGNING_KEYS=KEY_1)
def test_receipt_content_and_signature(world):
    start = timezone.localdate() + dt.timedelta(days=1)
    before = timezone.now()
    consent = grant(world["farmer"], world["partner"], ["land_contract", "agri_subsidy"], starts_at=local(start, 9), months=6, data_life_days=90)

    receipt = dict(consent.receipt)
    issued_at = receipt.pop("issued_at")
    receipt_id = receipt.pop("receipt_id")
    assert receipt == {
        "format": "puhui-consent-receipt/1",
        "consent_id": consent.pk,
        "county_code": "410225",
        "farmer_id_masked": world["id_number"][:4] + "**********" + world["id_number"][-4:],
        "partner_code": "mybank",
        "partner_name": "网商银行",
        "purpose_code": "credit",
        "text_version": 1,
        "text_sha256": consent_text_sha256(consent.text),
        "categories": ["agri_subsidy", "land_contract"],
        "starts_at": local(start, 9).isoformat(),
        "expires_at": consent.expires_at.astimezone(local(start).tzinfo).isoformat(),
        "fetch_frequency": "daily",
        "data_life_days": 90,
        "channel": "self",
        "sms_confirmed": False,
        "algorithm": "Ed25519",
        "key_id": "r1",
    }
    assert len(receipt_id) == 36
    assert before <= dt.datetime.fromisoformat(issued_at) <= timezone.now()
    # The text hash is over the stored text version, both languages.
    assert consent_text_sha256(consent.text) == hashlib.sha256(
        canonical_json({"purpose_code": "credit", "version": 1, "text_zh": consent.text.text_zh, "text_en": consent.text.text_en})
    ).hexdigest()
    # The full ID number appears nowhere in what the farmer downloads.
    assert world["id_number"] not in json.dumps(receipt_document(consent=consent), ensure_ascii=False)

    assert receipt_verify(consent.receipt, consent.receipt_signature) is True
    assert receipt_verify(consent.receipt, consent.receipt_signature, public_key=public_b64(SEED_1)) is True
    assert receipt_verify(consent.receipt, consent.receipt_signature, public_key=public_b64(SEED_2)) is False


@override_settings(CONSENT_SIGNING_KEYS=KEY_1)
@pytest.mark.parametrize(
    "tamper",
    [
        lambda r, s: ({**r, "categories": [*r["categories"], "social_insurance"]}, s),
        lambda r, s: ({**r, "data_life_days": 3650}, s),
        lambda r, s: ({**r, "expires_at": "2099-01-01T00:00:00+08:00"}, s),
        lambda r, s: ({**r, "key_id": "r2"}, s),
        lambda r, s: ({k: v for k, v in r.items() if k != "channel"}, s),
        lambda r, s: (r, base64.b64encode(b"\x00" * 64).decode()),
        lambda r, s: (r, s[:-4] + ("AAA=" if not s.endswith("AAA=") else "BBB=")),
        lambda r, s: (r, "not base64!"),
        lambda r, s: (r, ""),
        lambda r, s: ("not a receipt", s),
    ],
)
def test_tampering_fails_verification(world, tamper):
    consent = grant(world["farmer"], world["partner"])
    receipt, signature = tamper(consent.receipt, consent.receipt_signature)
    assert receipt_verify(receipt, signature) is False


def test_an_old_key_still_verifies_after_rotation(world):
    with override_settings(CONSENT_SIGNING_KEYS=KEY_1):
        old = grant(world["farmer"], world["partner"])
    assert old.receipt["key_id"] == "r1"

    with override_settings(CONSENT_SIGNING_KEYS=f"{KEY_2},{KEY_1}"):
        assert receipt_verify(old.receipt, old.receipt_signature) is True
        new = grant(world["farmer"], world["partner"])
        assert new.receipt["key_id"] == "r2"
        assert receipt_verify(new.receipt, new.receipt_signature) is True
        assert public_keys() == [
            {"key_id": "r2", "algorithm": "Ed25519", "public_key": public_b64(SEED_2)},
            {"key_id": "r1", "algorithm": "Ed25519", "public_key": public_b64(SEED_1)},
        ]

    # Once r1 is withdrawn from the configuration its receipts no longer verify by key id.
    with override_settings(CONSENT_SIGNING_KEYS=KEY_2):
        assert receipt_verify(old.receipt, old.receipt_signature) is False
        assert receipt_verify(new.receipt, new.receipt_signature) is True


@override_settings(CONSENT_SIGNING_KEYS=KEY_1)
def test_verify_receipt_command(world, tmp_path, capsys):
    consent = grant(world["farmer"], world["partner"])
    good = tmp_path / "receipt.json"
    good.write_text(json.dumps(receipt_document(consent=consent), ensure_ascii=False), encoding="utf-8")

    call_command("verify_receipt", str(good))
    assert capsys.readouterr().out == f"valid: receipt {consent.receipt['receipt_id']} consent {consent.pk} key r1\n"
    call_command("verify_receipt", str(good), public_key=public_b64(SEED_1))

    document = receipt_document(consent=consent)
    document["receipt"] = {**document["receipt"], "data_life_days": 1}
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(CommandError, match="INVALID"):
        call_command("verify_receipt", str(bad))
