"""Idempotent demo set-up for `make demo`: three counties, their synthetic data, one nightly run."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from counties.models import Farmer
from counties.tasks import default_business_date
from loans.policy import policy_ensure_default
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
        user_model = get_user_model()
        if not user_model.objects.filter(username=DEMO_OPERATOR[0]).exists():
            user_model.objects.create_superuser(DEMO_OPERATOR[0], password=DEMO_OPERATOR[1])
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
            call_command("run_nightly", county=county.code, date=business_date.isoformat())

    def _print(self, port: str) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Puhui demo is running:"))
        self.stdout.write(f"  admin console  http://localhost:{port}/admin/   {DEMO_OPERATOR[0]} / {DEMO_OPERATOR[1]}")
        for spec in DEMO_COUNTIES:
            self.stdout.write(
                f"  {spec['name']} {spec['code']}  http://{spec['domain']}:{port}/   "
                f"officials: /portal/  {DEMO_COUNTY_ADMIN[0]} / {DEMO_COUNTY_ADMIN[1]}"
            )
