from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from counties.synthetic import generate_county_data
from data_sharing.synthetic import government_data_generate
from platform.commands import county_or_error, date_or_error


class Command(BaseCommand):
    help = (
        "Fill one county's schema with a synthetic roster: townships, villages, households and farmers"
        " (ID and phone numbers encrypted); then every category's government records, the demo lending"
        " partner's data-sharing agreement, consents and past loans (unless --roster-only). The same --farmers,"
        " --seed and --as-of give the same data. The roster and the rest are two transactions: if the second"
        " fails, the roster stays; run again with --replace."
    )

    def add_arguments(self, parser):
        parser.add_argument("--county", required=True, help="county code, e.g. 410225")
        parser.add_argument("--farmers", type=int, required=True, help="number of farmers, e.g. 200000")
        parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
        parser.add_argument("--replace", action="store_true", help="delete the county's existing roster first")
        parser.add_argument("--as-of", help="date the ages hold on, YYYY-MM-DD (default: today)")
        parser.add_argument(
            "--roster-only", action="store_true",
            help="only the roster: no government records, agreement, consents or credit history",
        )

    def handle(self, *args, **options):
        county = county_or_error(options["county"])
        code = county.code
        as_of = date_or_error(options["as_of"])
        with schema_context(county.schema_name):
            try:
                report = generate_county_data(
                    county_code=code,
                    farmers=options["farmers"],
                    seed=options["seed"],
                    replace=options["replace"],
                    as_of=as_of,
                )
                extra = None if options["roster_only"] else government_data_generate(report=report, seed=options["seed"])
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
        if extra is not None:
            self._government_data_report(extra)

    def _government_data_report(self, extra: dict) -> None:
        records = extra["records"]
        consents = extra["consents"]
        self.stdout.write(
            self.style.SUCCESS(
                f"government data: {sum(records.values())} records in {len(records)} categories;"
                f" agreement {extra['agreement']} with {extra['partner']};"
                f" {sum(consents.values())} consents, {extra['consent_events']} consent events;"
                f" {extra['credit_outcomes']} past loans, {extra['bad_loans']} bad ({extra['bad_rate']:.2%})"
            )
        )
        self.stdout.write("  records: " + ", ".join(f"{code} {count}" for code, count in records.items()))
        self.stdout.write("  consents: " + ", ".join(f"{status} {count}" for status, count in sorted(consents.items())))
        for phase, seconds in extra["seconds"].items():
            self.stdout.write(f"  {phase}: {seconds:.2f}s")
        self.stdout.write(f"  total: {sum(extra['seconds'].values()):.2f}s")
