"""The demo set-up gives every demo official a TOTP device and prints the administrator's
secret and otpauth URL, so a demo user can log in with an authenticator app."""

from __future__ import annotations

from io import StringIO
from urllib.parse import quote

from django_otp.plugins.otp_totp.models import TOTPDevice

from counties.models import Official, Township
from counties.portal.services import totp_secret_base32
from platform.management.commands.setup_demo import DEMO_OFFICIALS, Command
from tests.conftest import in_county


def test_demo_officials_get_devices_and_the_admins_secret_is_printed(lankao, townships):
    with in_county(lankao):
        Command()._demo_officials()
        Command()._demo_officials()  # idempotent
        officials = {o.user.username: o for o in Official.objects.select_related("user", "township")}
        assert {name for name, _role in DEMO_OFFICIALS} | {"admin"} <= set(officials)
        assert officials["township"].township == Township.objects.order_by("code").first()
        for official in officials.values():
            assert TOTPDevice.objects.filter(user=official.user, confirmed=True).count() == 1
        admin_device = TOTPDevice.objects.get(user__username="admin")
        secret = totp_secret_base32(admin_device)

    out = StringIO()
    command = Command(stdout=out)
    command._print("8000")
    text = out.getvalue()
    assert f"TOTP for admin: secret {secret}" in text
    assert f"otpauth://totp/{quote('普惠 兰考县')}%3Aadmin?secret=" in text
    assert "risk " in text and "auditor " in text
