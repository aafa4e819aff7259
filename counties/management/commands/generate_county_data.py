import datetime as dt

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from counties.synthetic import generate_county_data
from platform.models import County


class Command(BaseCommand):
    help = (
        "Fill one county's schema with a synthetic roster: townships, villages, households and farmers"
        " (ID and phone numbers encrypted). The same --farmers, --seed and --as-of give the same roster."
    )

    def add_arguments(self, parser):
        parser.add_argument("--county", required=True, help="county code, e.g. 410225")
        parser.add_argument("--farmers", type=int, required=True, help="number of farmers, e.g. 200000")
        parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
        parser.add_argument("--replace", action="store_true", help="delete the county's existing roster first")
        parser.add_argument("--as-of", help="date the ages hold on, YYYY-MM-DD (default: today)")

    def handle(self, *args, **options):
        code = options["county"]
        county = County.objects.filter(code=code).first()
        if county is None:
            raise CommandError(f"没有代码为 {code} 的县 / no county with code {code}")
        try:
            as_of = dt.date.fromisoformat(options["as_of"]) if options["as_of"] else None
        except ValueError:
            raise CommandError(f"日期格式应为 YYYY-MM-DD / date must be YYYY-MM-DD: {options['as_of']}") from None
        with schema_context(county.schema_name):
            try:
                report = generate_county_data(
                    county_code=code,
                    farmers=options["farmers"],
                    seed=options["seed"],
                    replace=options["replace"],
                    as_of=as_of,
                )
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"{county.name} {county.code}: {report.townships} townships, {report.villages} villages,"
                f" {report.households} households, {report.farmers} farmers"
                f" ({report.farmers_with_phone} with phone); seed {report.seed}, ages as of {report.as_of}"
            )
        )
        if report.replaced_farmers:
            self.stdout.write(f"  replaced a roster of {report.replaced_farmers} farmers")
        for phase, seconds in report.seconds.items():
            self.stdout.write(f"  {phase}: {seconds:.2f}s")
        self.stdout.write(f"  total: {sum(report.seconds.values()):.2f}s")
