"""Stale, replayed and doctored bank API signatures.

Already proved in tests/platform/test_api_auth.py, not repeated: a bad signature; a changed body
or query; a timestamp 301 s old or ahead (299 s passes); a replayed nonce, also when re-signed
with a new timestamp; short nonces and missing headers; revoked and rotated keys.

Added here: a captured request whose timestamp is refreshed (to dodge the 300 s window) or whose
nonce is changed (to dodge the replay check) no longer matches its signature; one replayed
against another county the client also serves fails the same way (the path is signed); and
hostile timestamps (thousands of digits included) are refused in the API's error format.
"""

from __future__ import annotations

import time

import pytest

from platform.api.auth import NONCE_HEADER, TIMESTAMP_HEADER, signed_headers
from tests.conftest import in_county
from tests.data_sharing.test_consent import make_agreement
from tests.loans.test_features import CREDIT_CATEGORIES, credit_partner
from tests.loans.test_nightly_batch import activate_policy
from tests.platform.test_api_auth import error_of, lines_path, make_bank


@pytest.fixture
def bank(lankao, jinzhai):
    """A bank client that may act for both test counties, each with its policy."""
    with in_county(lankao):
        partner = credit_partner()
        activate_policy(partner)
    with in_county(jinzhai):  # the same partner (public schema), its own agreement and policy there
        make_agreement(partner, categories=CREDIT_CATEGORIES)
        activate_policy(partner)
    return make_bank(partner, [lankao, jinzhai])


def captured(bank, path: str) -> dict[str, str]:
    """The headers of a request the bank sent (and an attacker copied)."""
    headers = signed_headers(key_id=bank.client.key_id, secret=bank.secret, method="GET", path=path)
    assert bank.http.get(path, headers=headers).status_code == 200
    return headers


def test_a_captured_request_cannot_be_freshened_or_given_a_new_nonce(bank):
    headers = captured(bank, lines_path())

    later = {**headers, TIMESTAMP_HEADER: str(int(time.time()) + 5)}
    renonced = {**headers, NONCE_HEADER: headers[NONCE_HEADER][::-1] + "-replay"}

    assert error_of(bank.http.get(lines_path(), headers=later))["code"] == "signature_invalid"
    assert error_of(bank.http.get(lines_path(), headers=renonced))["code"] == "signature_invalid"
    assert error_of(bank.http.get(lines_path(), headers=headers))["code"] == "nonce_replayed"


def test_a_captured_request_replayed_on_another_county_fails_its_signature(bank):
    headers = captured(bank, lines_path("410225"))

    moved = bank.http.get(lines_path("341524"), headers=headers)

    assert moved.status_code == 401
    assert error_of(moved)["code"] == "signature_invalid"
    assert bank.get(lines_path("341524")).status_code == 200  # the client may act there, signed for it


@pytest.mark.parametrize("timestamp", ["１７００００００００", "-1", "1e9", "0x65", " 1700000000", "1700000000.5"])
def test_hostile_timestamps_are_refused_in_the_error_format(bank, timestamp):
    response = bank.get(lines_path(), timestamp=timestamp)

    assert response.status_code == 401
    assert error_of(response)["code"] in ("timestamp_invalid", "timestamp_expired")


@pytest.mark.parametrize("digits", [5000, 5010])
def test_a_timestamp_of_thousands_of_digits_is_refused_not_a_500(bank, digits):
    bank.http.raise_request_exception = False
    padded = str(int(time.time())).rjust(digits, "0")

    response = bank.get(lines_path(), timestamp=padded)

    assert response.status_code == 401
    assert error_of(response)["code"] in ("timestamp_invalid", "timestamp_expired")
