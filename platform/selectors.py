"""Reads across counties for the operators' console: each county's schema health and last
nightly run, and the platform-wide figures. Every read names the county's schema explicitly
(``schema_context`` or a schema-qualified table), never relying on the connection's search
path, which still falls back to ``public``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django_tenants.utils import schema_context

from counties.models import Farmer, NightlyRun
from counties.selectors import NPL_CLASSIFICATIONS, ZERO, ratio
from data_sharing.models import Consent
from loans.models import CreditLine, Loan
from platform.models import County, IntegrationClient, LendingPartner

# --- Schema health ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def tenant_migration_leaves() -> frozenset[tuple[str, str]]:
    """The latest migration (graph leaf) of every tenant app with migrations, read from disk once
    per process: what a fully migrated county schema has recorded in its django_migrations."""
    tenant_labels = {config.label for config in apps.get_app_configs() if config.name in settings.TENANT_APPS}
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    return frozenset(node for node in graph.leaf_nodes() if node[0] in tenant_labels)


@dataclass(frozen=True)
class CountyHealth:
    schema_exists: bool
    # Latest tenant migrations the schema has not recorded ("app.name"); empty when up to date.
    pending_migrations: tuple[str, ...] = ()
    last_run: NightlyRun | None = None
    farmers: int | None = None

    @property
    def migrated(self) -> bool:
        return self.schema_exists and not self.pending_migrations

    @property
    def last_run_duration(self) -> dt.timedelta | None:
        run = self.last_run
        if run is None or run.started_at is None or run.finished_at is None:
            return None
        return run.finished_at - run.started_at


def _table(schema: str, model) -> str:
    return f"{connection.ops.quote_name(schema)}.{connection.ops.quote_name(model._meta.db_table)}"


def county_health(county: County) -> CountyHealth:
    """Does the county's schema exist, has it recorded the latest migration of every tenant app,
    its last nightly run (business date, status, duration) and its number of farmers."""
    schema = county.schema_name
    with connection.cursor() as cursor:
        # to_regclass answers NULL (no error) for a missing schema or table.
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s), to_regclass(%s), to_regclass(%s), "
            "to_regclass(%s)",
            [
                schema,
                f"{connection.ops.quote_name(schema)}.django_migrations",
                _table(schema, NightlyRun),
                _table(schema, Farmer),
            ],
        )
        exists, migrations_table, runs_table, farmers_table = cursor.fetchone()
        if not exists:
            return CountyHealth(schema_exists=False)
        leaves = tenant_migration_leaves()
        applied: set[tuple[str, str]] = set()
        if migrations_table:
            cursor.execute(
                f"SELECT app, name FROM {connection.ops.quote_name(schema)}.django_migrations WHERE app = ANY(%s)",
                [sorted({app for app, _name in leaves})],
            )
            applied = set(cursor.fetchall())
    pending = tuple(sorted(f"{app}.{name}" for app, name in leaves - applied))
    last_run, farmers = None, None
    with schema_context(schema):
        if runs_table:
            last_run = NightlyRun.objects.order_by("-business_date").first()
        if farmers_table:
            farmers = Farmer.objects.count()
    return CountyHealth(schema_exists=True, pending_migrations=pending, last_run=last_run, farmers=farmers)


# --- Figures across counties -----------------------------------------------------------------


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


@dataclass
class CountyFigures:
    """One county's (or the platform's) figures, with the definitions of the county dashboard
    (``counties.selectors.Figures``): consent rate = farmers with an ACTIVE consent ÷ registered
    farmers; lines = ACTIVE credit lines; loan balance = outstanding principal of open loans;
    NPL ratio = the balance classified 次级, 可疑 or 损失 ÷ loan balance."""

    code: str
    name: str
    farmers: int = 0
    consented: int = 0
    lines: int = 0
    lines_amount: Decimal = ZERO
    loan_balance: Decimal = ZERO
    npl_balance: Decimal = ZERO

    @property
    def consent_rate(self) -> Decimal | None:
        return ratio(self.consented, self.farmers)

    @property
    def npl_ratio(self) -> Decimal | None:
        return ratio(self.npl_balance, self.loan_balance)

    @property
    def consent_rate_pct(self) -> str:
        return _pct(self.consent_rate)

    @property
    def npl_ratio_pct(self) -> str:
        return _pct(self.npl_ratio)

    def add(self, other: CountyFigures) -> None:
        for name in ("farmers", "consented", "lines", "lines_amount", "loan_balance", "npl_balance"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class PlatformFigures:
    counties: list[CountyFigures] = field(default_factory=list)
    total: CountyFigures = field(default_factory=lambda: CountyFigures(code="", name=""))

    @property
    def counties_live(self) -> int:
        return len(self.counties)


def _figures_sql() -> str:
    # Unqualified names: the query runs inside schema_context, so they resolve in the county's
    # schema (each of these tables exists only there).
    return f"""
SELECT f.n, c.n, l.n, l.amount, o.balance, o.npl
  FROM (SELECT count(*) AS n FROM {Farmer._meta.db_table}) f,
       (SELECT count(DISTINCT farmer_id) AS n FROM {Consent._meta.db_table} WHERE status = %(consent_active)s) c,
       (SELECT count(*) AS n, coalesce(sum(amount), 0) AS amount
          FROM {CreditLine._meta.db_table} WHERE status = %(line_active)s) l,
       (SELECT coalesce(sum(outstanding_principal), 0) AS balance,
               coalesce(sum(outstanding_principal) FILTER (WHERE classification = ANY(%(npl)s)), 0) AS npl
          FROM {Loan._meta.db_table} WHERE status = %(loan_active)s) o
"""


def platform_figures() -> PlatformFigures:
    """Every live county's figures, one aggregate query per county in its own schema, and their
    sum (the platform's ratios are recomputed from the summed counts, not averaged)."""
    sql = _figures_sql()
    params = {
        "consent_active": Consent.Status.ACTIVE,
        "line_active": CreditLine.Status.ACTIVE,
        "loan_active": Loan.Status.ACTIVE,
        "npl": list(NPL_CLASSIFICATIONS),
    }
    result = PlatformFigures()
    for county in County.objects.filter(status=County.Status.LIVE).order_by("code"):
        with schema_context(county.schema_name), connection.cursor() as cursor:
            cursor.execute(sql, params)
            farmers, consented, lines, amount, balance, npl = cursor.fetchone()
        figures = CountyFigures(
            code=county.code,
            name=county.name,
            farmers=farmers,
            consented=consented,
            lines=lines,
            lines_amount=Decimal(amount).quantize(ZERO),
            loan_balance=Decimal(balance).quantize(ZERO),
            npl_balance=Decimal(npl).quantize(ZERO),
        )
        result.counties.append(figures)
        result.total.add(figures)
    return result


# --- What still names a lending partner ------------------------------------------------------------

_PARTNER_REFERENCES_SQL = """
SELECT n.nspname, c.relname, a.attname
  FROM pg_constraint k
  JOIN pg_class c ON c.oid = k.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
 WHERE k.contype = 'f' AND k.confrelid = %s::regclass AND n.nspname <> 'public'
 ORDER BY 1, 2, 3
"""


def partner_references(partner: LendingPartner) -> list[str]:
    """Where the partner is still named: its integration clients, and every county table whose
    foreign key points at it (agreements, consents, policies, loans…), found through the
    database's own foreign keys — Django's deletion collector looks for those tables in the
    public schema, where they do not exist. One EXISTS query per county schema."""
    found = [f"{client}" for client in IntegrationClient.objects.filter(partner=partner)]
    names = dict(County.objects.values_list("schema_name", "name"))
    with connection.cursor() as cursor:
        cursor.execute(_PARTNER_REFERENCES_SQL, [f"public.{LendingPartner._meta.db_table}"])
        by_schema: dict[str, list[tuple[str, str]]] = {}
        for schema, table, column in cursor.fetchall():
            by_schema.setdefault(schema, []).append((table, column))
        quote = connection.ops.quote_name
        for schema, columns in by_schema.items():
            checks = ", ".join(
                f"EXISTS (SELECT 1 FROM {quote(schema)}.{quote(table)} WHERE {quote(column)} = %s)"
                for table, column in columns
            )
            cursor.execute(f"SELECT {checks}", [partner.pk] * len(columns))
            found += [
                f"{names.get(schema, schema)}: {table}"
                for (table, _column), used in zip(columns, cursor.fetchone(), strict=True)
                if used
            ]
    return found
