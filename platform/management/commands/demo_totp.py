"""Print the current TOTP code of a demo official or operator, for people trying `make demo`
without an authenticator app. Refused in production mode."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_tenants.utils import schema_context

from platform.commands import county_or_error


class Command(BaseCommand):
    help = "Print the current 6-digit TOTP code of a user (local/demo mode only)."

    def add_arguments(self, parser):
        parser.add_argument("--county", help="county code; omit for a platform operator")
        parser.add_argument("--user", default="admin")

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("生产模式下不提供验证码 / refused when PUHUI_MODE=production")
        schema = county_or_error(options["county"]).schema_name if options["county"] else "public"
        with schema_context(schema):
            device = TOTPDevice.objects.filter(user__username=options["user"], confirmed=True).order_by("id").first()
            if device is None:
                raise CommandError(f"用户 {options['user']} 没有验证器 / {options['user']} has no TOTP device")
            code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift)
        self.stdout.write(f"{code:0{device.digits}d}")
