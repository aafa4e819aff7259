from django.core.management.base import BaseCommand
from django_tenants.utils import schema_context

from counties.services import nightly_run
from counties.tasks import default_business_date
from platform.commands import county_or_error, date_or_error


class Command(BaseCommand):
    help = "Run one county's nightly work synchronously for a business date (default: yesterday)."

    def add_arguments(self, parser):
        parser.add_argument("--county", required=True, help="county code, e.g. 410225")
        parser.add_argument("--date", help="business date YYYY-MM-DD (default: yesterday, Asia/Shanghai)")

    def handle(self, *args, **options):
        county = county_or_error(options["county"])
        business_date = date_or_error(options["date"], default=default_business_date())
        with schema_context(county.schema_name):
            run = nightly_run(business_date=business_date)
        self.stdout.write(self.style.SUCCESS(f"{county.name} {county.code} {business_date}: {run.status}"))
        for step in run.steps:
            self.stdout.write(f"  {step['name']}: {step['status']} {step.get('counts', {})} in {step['seconds']}s")
