import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from counties.services import nightly_run
from counties.tasks import default_business_date
from platform.models import County


class Command(BaseCommand):
    help = "Run one county's nightly work synchronously for a business date (default: yesterday)."

    def add_arguments(self, parser):
        parser.add_argument("--county", required=True, help="county code, e.g. 410225")
        parser.add_argument("--date", help="business date YYYY-MM-DD (default: yesterday, Asia/Shanghai)")

    def handle(self, *args, **options):
        county = County.objects.filter(code=options["county"]).first()
        if county is None:
            raise CommandError(f"没有代码为 {options['county']} 的县 / no county with code {options['county']}")
        try:
            business_date = dt.date.fromisoformat(options["date"]) if options["date"] else default_business_date()
        except ValueError:
            raise CommandError(f"日期格式应为 YYYY-MM-DD / date must be YYYY-MM-DD: {options['date']}") from None
        with schema_context(county.schema_name):
            run = nightly_run(business_date=business_date)
        self.stdout.write(self.style.SUCCESS(f"{county.name} {county.code} {business_date}: {run.status}"))
        for step in run.steps:
            self.stdout.write(f"  {step['name']}: {step['status']} {step.get('counts', {})} in {step['seconds']}s")
