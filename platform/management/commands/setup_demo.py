"""Idempotent demo set-up for `make demo`: three counties, their synthetic data, one nightly run."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context, tenant_context

from counties.models import Farmer, Official, Township
from counties.tasks import default_business_date
from loans.policy import policy_ensure_default
from loans.synthetic import demo_loans_generate
from platform.models import County, LendingPartner
from platform.services import county_onboard

DEMO_COUNTIES = [
    {"code": "410225", "name": "兰考县", "domain": "lankao.localhost", "province": "河南省", "city": "开封市"},
    {"code": "341524", "name": "金寨县", "domain": "jinzhai.localhost", "province": "安徽省", "city": "六安市"},
    {"code": "370982", "name": "新泰市", "domain": "xintai.localhost", "province": "山东省", "city": "泰安市"},
]
DEMO_OPERATOR = ("operator", "puhui-operator")
DEMO_PARTNER = "puhui-bank"  # created by data_sharing.synthetic
DEMO_COUNTY_ADMIN = ("admin", "puhui-demo")
# One official of every other role per county (same demo password); the township officer
# sees the county's first township. Each gets a TOTP device whose secret is printed below.
DEMO_OFFICIALS = [
    ("risk", Official.Role.RISK_OFFICER),
    ("data", Official.Role.DATA_OFFICER),
    ("township", Official.Role.TOWNSHIP_OFFICER),
    ("auditor", Official.Role.AUDITOR),
]


class Command(BaseCommand):
    help = "Set up (or just print) the three demo counties. Refused when PUHUI_MODE=production."

    def add_arguments(self, parser):
        parser.add_argument("--farmers", type=int, default=20000)
        parser.add_argument("--print-only", action="store_true")
        parser.add_argument("--port", default="8000")

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("演示数据不能在生产模式下创建 / demo data is refused when PUHUI_MODE=production")
        if options["print_only"]:
            self._print(options["port"])
        else:
            self._set_up(options["farmers"])

    def _set_up(self, farmers: int) -> None:
        from django_otp.plugins.otp_totp.models import TOTPDevice

        user_model = get_user_model()
        operator = user_model.objects.filter(username=DEMO_OPERATOR[0]).first()
        if operator is None:
            operator = user_model.objects.create_superuser(DEMO_OPERATOR[0], password=DEMO_OPERATOR[1])
        # The console asks operators for a TOTP code too (public schema); its secret is printed below.
        if not TOTPDevice.objects.filter(user=operator, confirmed=True).exists():
            TOTPDevice.objects.create(user=operator, name="console", confirmed=True)
        business_date = default_business_date()
        for spec in DEMO_COUNTIES:
            county = County.objects.filter(code=spec["code"]).first()
            if county is None:
                county = county_onboard(**spec, admin_password=DEMO_COUNTY_ADMIN[1]).county
                self.stdout.write(f"onboarded {county}")
            with schema_context(county.schema_name):
                has_data = Farmer.objects.exists()
            if not has_data:
                call_command("generate_county_data", county=county.code, farmers=farmers, seed=int(county.code))
            with schema_context(county.schema_name):
                # The generator's agreement names the demo bank; a real county's officials
                # draft and approve their own policy instead.
                policy_ensure_default(partner=LendingPartner.objects.get(code=DEMO_PARTNER), actor="setup_demo")
                self._demo_officials()
            call_command("run_nightly", county=county.code, date=business_date.isoformat())
            with schema_context(county.schema_name):
                # A loan book to look at: loans drawn over the last 120 days, most repaid on
                # time, some behind — through the real services and a nightly close per day.
                made = demo_loans_generate(count=max(20, farmers // 100), until=business_date, seed=int(county.code))
            if made.get("loans"):
                self.stdout.write(f"{county.name}: demo loan book {made}")

    def _demo_officials(self) -> None:
        """Every demo official of the current county has a confirmed TOTP device (idempotent)."""
        from django_otp.plugins.otp_totp.models import TOTPDevice

        user_model = get_user_model()
        township = Township.objects.order_by("code").first()
        for username, role in DEMO_OFFICIALS:
            user = user_model.objects.filter(username=username).first()
            if user is None:
                # Demo only: the demo password is shorter than the validators allow officials.
                user = user_model.objects.create_user(username=username, password=DEMO_COUNTY_ADMIN[1])
                Official.objects.create(
                    user=user, role=role, township=township if role == Official.Role.TOWNSHIP_OFFICER else None
                )
        for official in Official.objects.select_related("user"):
            if not TOTPDevice.objects.filter(user=official.user, confirmed=True).exists():
                TOTPDevice.objects.create(user=official.user, name="portal", confirmed=True)

    def _print(self, port: str) -> None:
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from counties.portal.services import totp_secret_base32

        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Puhui demo is running:"))
        self.stdout.write(f"  admin console  http://localhost:{port}/admin/   {DEMO_OPERATOR[0]} / {DEMO_OPERATOR[1]}")
        console_device = (
            TOTPDevice.objects.filter(user__username=DEMO_OPERATOR[0], confirmed=True).order_by("id").first()
        )
        if console_device is not None:
            self.stdout.write(f"      TOTP for {DEMO_OPERATOR[0]}: secret {totp_secret_base32(console_device)}")
            self.stdout.write(f"      {console_device.config_url}")
        for spec in DEMO_COUNTIES:
            self.stdout.write(
                f"  {spec['name']} {spec['code']}  http://{spec['domain']}:{port}/   "
                f"officials: /portal/  {DEMO_COUNTY_ADMIN[0]} / {DEMO_COUNTY_ADMIN[1]}"
            )
            county = County.objects.filter(code=spec["code"]).first()
            if county is None:
                continue
            with tenant_context(county):  # the county itself: its name is the TOTP issuer
                devices = {
                    device.user.username: device
                    for device in TOTPDevice.objects.filter(confirmed=True).select_related("user").order_by("id")
                }
                admin = devices.get(DEMO_COUNTY_ADMIN[0])
                if admin is not None:
                    # The second factor: add this to an authenticator app (or paste the URL into
                    # one that accepts otpauth:// links), then log in with its 6-digit code.
                    self.stdout.write(f"      TOTP for {DEMO_COUNTY_ADMIN[0]}: secret {totp_secret_base32(admin)}")
                    self.stdout.write(f"      {admin.config_url}")
                    self.stdout.write(f"      no authenticator app? python manage.py demo_totp --county {spec['code']} --user admin")
                others = [f"{name} {totp_secret_base32(devices[name])}" for name, _role in DEMO_OFFICIALS if name in devices]
                if others:
                    self.stdout.write(f"      other officials (password {DEMO_COUNTY_ADMIN[1]}), TOTP secrets: " + "; ".join(others))
