"""`manage.py demo_totp` prints the code an authenticator app would show, and only outside
production."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import in_county


def test_prints_the_current_code_of_a_county_official(lankao):
    with in_county(lankao):
        user = get_user_model().objects.create_user("totp-demo", password="x" * 12)
        device = TOTPDevice.objects.create(user=user, name="demo", confirmed=True)
    def now() -> str:
        return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=6, drift=device.drift):06d}"

    before = now()
    out = StringIO()
    call_command("demo_totp", county=lankao.code, user="totp-demo", stdout=out)
    assert out.getvalue().strip() in {before, now()}  # the same code, unless a 30 s step just ended


def test_refused_without_a_device_and_in_production(lankao):
    with pytest.raises(CommandError, match="没有验证器"):
        call_command("demo_totp", county=lankao.code, user="nobody")
    with override_settings(PRODUCTION=True), pytest.raises(CommandError, match="生产模式"):
        call_command("demo_totp", county=lankao.code)
