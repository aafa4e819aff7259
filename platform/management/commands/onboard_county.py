import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from platform.api.services import operator_action_record
from platform.models import OperatorAction
from platform.services import county_onboard


class Command(BaseCommand):
    help = "Onboard a county: tenant row, schema, domain and a first county administrator."

    def add_arguments(self, parser):
        parser.add_argument("--code", required=True, help="6-digit GB/T 2260 county code, e.g. 410225")
        parser.add_argument("--name", required=True, help="county name, e.g. 兰考县")
        parser.add_argument("--domain", required=True, help="primary domain, e.g. lankao.localhost")
        parser.add_argument("--province", default="")
        parser.add_argument("--city", default="")
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument(
            "--onboarding-only", action="store_true", help="leave the county in status 'onboarding' instead of 'live'"
        )

    def handle(self, *args, **options):
        try:
            result = county_onboard(
                code=options["code"],
                name=options["name"],
                domain=options["domain"],
                province=options["province"],
                city=options["city"],
                admin_username=options["admin_username"],
                go_live=not options["onboarding_only"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        county = result.county
        # The console's onboardings are in the operators' audit trail; so are the shell's, under
        # the account that ran the command.
        operator_action_record(
            operator=f"manage.py onboard_county ({getpass.getuser()})",
            action=OperatorAction.Action.COUNTY_ONBOARD,
            target=county,
            detail={"values": {key: options[key] for key in ("code", "name", "province", "city", "domain",
                                                             "admin_username", "onboarding_only")}},
        )
        self.stdout.write(
            self.style.SUCCESS(f"onboarded {county.name} {county.code}: schema {county.schema_name}, status {county.status}")
        )
        self.stdout.write(f"county administrator: {result.admin_username}")
        if result.generated_password:
            self.stdout.write(f"password (shown once, store it now): {result.generated_password}")
        else:
            self.stdout.write("password: from COUNTY_ADMIN_PASSWORD")
