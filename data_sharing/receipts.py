"""Signed consent receipts.

A receipt is a JSON object the farmer can download and anyone can check: canonical JSON
(sorted keys, no spaces, UTF-8, non-ASCII kept as is) signed with Ed25519. The signing keys are
``settings.CONSENT_SIGNING_KEYS`` — ``"key_id:base64(32-byte seed)"`` entries, newest first. The
newest signs; every listed key still verifies, so rotating in a new key leaves old receipts
valid. The receipt names its ``key_id``; :func:`public_keys` publishes the public halves.

The receipt never holds the farmer's full ID number, only the masked form (first 4 + last 4).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone

from data_sharing.models import Consent, ConsentText
from data_sharing.pii import decrypt, mask_id_number
from platform.models import County

RECEIPT_FORMAT = "puhui-consent-receipt/1"
ALGORITHM = "Ed25519"


@lru_cache(maxsize=4)
def _keyring(raw: str) -> tuple[tuple[str, Ed25519PrivateKey], ...]:
    keys: list[tuple[str, Ed25519PrivateKey]] = []
    for entry in raw.split(","):
        key_id, _sep, material = entry.strip().partition(":")
        try:
            seed = base64.b64decode(material, validate=True)
        except binascii.Error:
            seed = b""
        if not key_id or len(seed) != 32 or key_id in dict(keys):
            raise ImproperlyConfigured("CONSENT_SIGNING_KEYS entries must be distinct 'key_id:base64(32-byte seed)'")
        keys.append((key_id, Ed25519PrivateKey.from_private_bytes(seed)))
    return tuple(keys)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def canonical_json(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def consent_text_sha256(text: ConsentText) -> str:
    """SHA-256 (hex) of the exact text version: canonical JSON of its purpose, version and both
    languages, as stored (before the county name is filled in)."""
    return hashlib.sha256(
        canonical_json(
            {"purpose_code": text.purpose_code, "version": text.version, "text_zh": text.text_zh, "text_en": text.text_en}
        )
    ).hexdigest()


def _county_code() -> str:
    tenant = connection.tenant
    code = getattr(tenant, "code", None)
    return code or County.objects.values_list("code", flat=True).get(schema_name=connection.schema_name)


def _local_iso(moment) -> str:
    return timezone.localtime(moment).isoformat()


def signing_key() -> tuple[str, Ed25519PrivateKey]:
    """The newest receipt-signing key and its id (what every new receipt is signed with)."""
    return _keyring(settings.CONSENT_SIGNING_KEYS)[0]


def receipt_issue(*, consent: Consent, sms_confirmed: bool) -> tuple[dict, str]:
    """Build and sign the receipt for a just-granted consent; returns (receipt, signature)."""
    key_id, private_key = signing_key()
    receipt = {
        "format": RECEIPT_FORMAT,
        "receipt_id": str(uuid.uuid4()),
        "consent_id": consent.pk,
        "county_code": _county_code(),
        "farmer_id_masked": mask_id_number(decrypt(consent.farmer.id_number_encrypted)),
        "partner_code": consent.partner.code,
        "partner_name": consent.partner.name,
        "purpose_code": consent.purpose_code,
        "text_version": consent.text.version,
        "text_sha256": consent_text_sha256(consent.text),
        "categories": sorted(consent.categories),
        "starts_at": _local_iso(consent.starts_at),
        "expires_at": _local_iso(consent.expires_at),
        "fetch_frequency": consent.fetch_frequency,
        "data_life_days": consent.data_life_days,
        "channel": consent.channel,
        "sms_confirmed": sms_confirmed,
        "issued_at": _local_iso(timezone.now()),
        "algorithm": ALGORITHM,
        "key_id": key_id,
    }
    signature = base64.b64encode(private_key.sign(canonical_json(receipt))).decode("ascii")
    return receipt, signature


def receipt_verify(receipt: dict, signature: str, *, public_key: str | None = None) -> bool:
    """True if ``signature`` is valid for ``receipt``.

    The key is the configured one the receipt's ``key_id`` names (older keys still verify), or
    ``public_key`` (base64 raw Ed25519 key, as :func:`public_keys` publishes it) for a check
    made outside the platform. Any malformed input is simply not valid.
    """
    if not isinstance(receipt, dict) or not isinstance(signature, str):
        return False
    try:
        if public_key is not None:
            verifier = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        else:
            private = dict(_keyring(settings.CONSENT_SIGNING_KEYS)).get(receipt.get("key_id"))
            if private is None:
                return False
            verifier = private.public_key()
        verifier.verify(base64.b64decode(signature, validate=True), canonical_json(receipt))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True


def public_keys() -> list[dict]:
    """The public halves of the signing keys, newest first, for a JWKS-like endpoint."""
    return [
        {"key_id": key_id, "algorithm": ALGORITHM, "public_key": base64.b64encode(_raw_public(key.public_key())).decode()}
        for key_id, key in _keyring(settings.CONSENT_SIGNING_KEYS)
    ]


def receipt_document(*, consent: Consent) -> dict:
    """What the farmer downloads: the receipt and its signature, checkable on their own."""
    return {"receipt": consent.receipt, "signature": consent.receipt_signature}
