import base64
import datetime as dt
import hashlib
import hmac

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from data_sharing import pii


def test_check_digit_on_the_standard_example():
    # The GB 11643-1999 worked example: 11010519491231002X.
    assert pii.id_check_digit("11010519491231002") == "X"
    assert pii.validate_id_number("11010519491231002x") == "11010519491231002X"


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("1101051949123100", "format"),
        ("110105194912310021", "check_digit"),
        ("990105194912310028", "region"),
        ("110105194902300027", "birth_date"),
        ("110105209912310025", "birth_date"),
    ],
)
def test_invalid_id_numbers_say_why(number, code):
    if code in {"region", "birth_date"}:
        number = number[:17] + pii.id_check_digit(number[:17])
    with pytest.raises(ValidationError) as caught:
        pii.validate_id_number(number, today=dt.date(2026, 11, 29))
    assert caught.value.code == code


def test_masks():
    assert pii.mask_phone("13812341234") == "138****1234"
    assert pii.mask_id_number("11010519491231002X") == "1101**********002X"


def test_encryption_round_trip_and_rotation():
    old_key = "k1:" + "A" * 43 + "="
    new_key = "k2:" + "B" * 43 + "="
    with override_settings(FIELD_ENCRYPTION_KEYS=old_key):
        token = pii.encrypt("13812341234")
    assert token.startswith("k1:")
    with override_settings(FIELD_ENCRYPTION_KEYS=f"{new_key},{old_key}"):
        assert pii.decrypt(token) == "13812341234"
        assert pii.needs_reencryption(token) is True
        fresh = pii.encrypt("13812341234")
        assert fresh.startswith("k2:") and fresh != token
        assert pii.needs_reencryption(fresh) is False


@pytest.mark.parametrize("key", ["QUJD", base64.b64encode(b"k" * 100).decode()])
def test_blind_index_is_hmac_sha256_under_the_key(key):
    # The precomputed-pad implementation must equal the textbook HMAC, short and long keys alike.
    with override_settings(BLIND_INDEX_KEY=key):
        for value in ("11010519491231002X", "13812341234", ""):
            expected = hmac.new(base64.b64decode(key), value.encode(), hashlib.sha256).hexdigest()
            assert pii.blind_index(value) == expected


def test_blind_index_is_keyed_and_stable():
    with override_settings(BLIND_INDEX_KEY="QUJD"):
        first = pii.blind_index("13812341234")
        assert first == pii.blind_index("13812341234")
    with override_settings(BLIND_INDEX_KEY="REVG"):
        assert pii.blind_index("13812341234") != first
