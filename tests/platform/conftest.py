"""Console fixtures: the operators' console asks for a TOTP code after the password, so a
logged-in operator in these tests is one whose session carries a verified device."""

from __future__ import annotations

from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import operator_login  # noqa: F401 - re-exported for the console tests


def totp_code(device: TOTPDevice, *, offset_steps: int = 0) -> str:
    """The code the operator's authenticator app shows now (``offset_steps``: another 30-second step)."""
    from django_otp.oath import totp

    value = totp(
        device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift + offset_steps
    )
    return f"{value:0{device.digits}d}"
