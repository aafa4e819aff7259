"""Writes to the county registry. Everything that creates or changes a county goes through here
(the ``onboard_county`` command and the admin console alike)."""

from __future__ import annotations

import functools
import logging
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.validators import validate_domain_name
from django.db import DatabaseError, connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from counties.models import Official
from platform.middleware import forget_county_hosts
from platform.models import County, Domain, schema_name_for, validate_county_code

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnboardedCounty:
    county: County
    admin_username: str
    # Only set when the password was generated here: show it once, never store it.
    generated_password: str | None


def county_onboard(
    *,
    code: str,
    name: str,
    domain: str,
    province: str = "",
    city: str = "",
    admin_username: str = "admin",
    admin_password: str | None = None,
    go_live: bool = True,
) -> OnboardedCounty:
    """Create a county: its registry row, its schema (all county migrations), its primary
    domain and a first county administrator. Refuses a duplicate code or domain before
    touching anything; if building the schema fails, nothing is left behind."""
    code = (code or "").strip()
    name = (name or "").strip()
    domain = (domain or "").strip().lower()
    validate_county_code(code)
    if not name:
        raise ValidationError(_("县名称不能为空 / The county name is required"), code="name")
    try:
        validate_domain_name(domain)
    except ValidationError:
        raise ValidationError(_("域名无效：%(domain)s / Invalid domain: %(domain)s") % {"domain": domain}, code="domain") from None
    existing = County.objects.filter(code=code).first()
    if existing:
        raise ValidationError(
            _("行政区划代码 %(code)s 已接入（%(name)s），不能重复接入 / County %(code)s is already onboarded (%(name)s)")
            % {"code": code, "name": existing.name},
            code="duplicate",
        )
    if Domain.objects.filter(domain=domain).exists():
        raise ValidationError(_("域名 %(domain)s 已被使用 / Domain %(domain)s is already in use") % {"domain": domain}, code="duplicate_domain")

    generated = None
    if not admin_password:
        admin_password = settings.COUNTY_ADMIN_PASSWORD or None
    if not admin_password:
        admin_password = generated = secrets.token_urlsafe(12)

    county = County.objects.create(
        schema_name=schema_name_for(code), code=code, name=name, province=province, city=city,
        status=County.Status.ONBOARDING,
    )
    try:
        county_schema_create(county)
        with transaction.atomic():
            Domain.objects.create(domain=domain, tenant=county, is_primary=True)
            with schema_context(county.schema_name):
                user = get_user_model().objects.create_user(username=admin_username, password=admin_password)
                Official.objects.create(user=user, role=Official.Role.COUNTY_ADMIN)
            if go_live:
                county.status = County.Status.LIVE
                county.save(update_fields=["status", "status_changed_at"])
    except BaseException:
        # Compensate: a half-onboarded county (schema without admin, row without domain) would
        # block the retry with a "duplicate" it never finished.
        Domain.objects.filter(tenant=county).delete()
        county.delete(force_drop=True)
        raise
    forget_county_hosts([domain])
    return OnboardedCounty(county=county, admin_username=admin_username, generated_password=generated)


def county_set_status(*, county: County, status: str) -> County:
    """Suspend or resume a county; its domains answer 403 while suspended, at once."""
    if status not in County.Status.values:
        raise ValidationError(_("未知状态 / Unknown status: %(status)s") % {"status": status}, code="status")
    county.status = status
    county.save(update_fields=["status", "status_changed_at"])
    forget_county_hosts(list(county.domains.values_list("domain", flat=True)))
    return county


# --- A county's schema, cloned from a template ---------------------------------------------------
#
# Running every county migration for a new schema costs about 2 s, 90 % of it Django rendering
# migration states in Python (benchmarks/many_counties.py); the SQL is 0.5 s. Every county's
# migrations are the same (none depends on the county), so the first onboarding migrates a
# template schema once and each county after it is a copy of that template made in SQL — the
# tables with their columns, identity sequences and data (django_migrations, content types,
# permissions, the data catalog), then the constraints, indexes, functions and triggers under
# their own names — followed by the ordinary ``migrate_schemas`` of the new schema, which has
# nothing to do when the template is current and applies whatever it is missing otherwise.
# A template older than the code's migrations is rebuilt first; anything the copy does not know
# how to reproduce (a sequence-backed column default, a view, a partitioned table) sends the
# county down the plain migration path instead.

COUNTY_TEMPLATE_SCHEMA = "puhui_county_template"
# Held shared while a template is copied and exclusively while one is swapped in.
_TEMPLATE_LOCK = 0x7075_6875_6974  # "puhuit"


def county_schema_create(county: County) -> str:
    """Create ``county``'s schema with every county migration applied: a copy of the template
    schema when one can be had, else by running the migrations. Returns which: "copied" or
    "migrated"."""
    try:
        cloned = _county_schema_clone(county.schema_name)
    except DatabaseError:
        if connection.in_atomic_block:
            raise  # the caller's transaction is broken: let it roll back
        logger.exception("copying the county template failed; migrating %s instead", county.schema_name)
        cloned = False
    if cloned:
        if not _schema_current(county.schema_name):  # a template swapped for an older one meanwhile
            call_command("migrate_schemas", tenant=True, schema_name=county.schema_name, interactive=False, verbosity=0)
    else:
        county.create_schema(check_if_exists=True, verbosity=0)
    connection.set_schema_to_public()
    return "copied" if cloned else "migrated"


@functools.cache
def _migration_nodes() -> frozenset[tuple[str, str]]:
    """Every migration of the code (a county schema records all apps' migrations as applied)."""
    return frozenset(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)


def _schema_exists(cursor, schema: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
    return cursor.fetchone() is not None


def _template_current(cursor) -> bool:
    if not _schema_exists(cursor, COUNTY_TEMPLATE_SCHEMA):
        return False
    cursor.execute(f'SELECT app, name FROM "{COUNTY_TEMPLATE_SCHEMA}".django_migrations')
    return _migration_nodes() <= set(cursor.fetchall())


def _schema_current(schema: str) -> bool:
    """Every migration of the code is recorded in ``schema``. Then ``migrate_schemas`` would have
    nothing to do — and would still cost seconds in a database of thousands of schemas, where
    Django's table introspection scans the whole catalog."""
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations')
        return _migration_nodes() <= set(cursor.fetchall())


def county_template_build() -> None:
    """Migrate a fresh template under a temporary name, then swap it in (concurrent builders
    are harmless: the last swap wins)."""
    building = f"{COUNTY_TEMPLATE_SCHEMA}_{secrets.token_hex(4)}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{building}"')
    try:
        call_command("migrate_schemas", tenant=True, schema_name=building, interactive=False, verbosity=0)
        connection.set_schema_to_public()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_TEMPLATE_LOCK])
            cursor.execute(f'DROP SCHEMA IF EXISTS "{COUNTY_TEMPLATE_SCHEMA}" CASCADE')
            cursor.execute(f'ALTER SCHEMA "{building}" RENAME TO "{COUNTY_TEMPLATE_SCHEMA}"')
    except BaseException:
        connection.set_schema_to_public()
        if not connection.in_atomic_block or not connection.needs_rollback:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP SCHEMA IF EXISTS "{building}" CASCADE')
        raise


def _county_schema_clone(target: str) -> bool:
    """Copy the template into the new schema ``target``, in one transaction. False when the
    template cannot be used (then nothing was written)."""
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        current = _template_current(cursor)
    if not current:
        county_template_build()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [_TEMPLATE_LOCK])
        cursor.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [COUNTY_TEMPLATE_SCHEMA])
        template = cursor.fetchone()
        if template is None:
            return False
        # The plan depends only on the template, which nothing writes to: made once per process
        # and template (a rebuilt template is a new schema, with a new oid). Its catalog queries
        # scan pg_class, which a database of thousands of counties makes slow.
        if template[0] not in _clone_plans:
            _clone_plans.clear()
            _clone_plans[template[0]] = _clone_plan(cursor, COUNTY_TEMPLATE_SCHEMA)
        plan = _clone_plans[template[0]]
        if plan is None:
            return False
        cursor.execute(f'CREATE SCHEMA "{target}"')
        cursor.execute(f'SET LOCAL search_path = "{target}"')
        # One round trip: the ~470 statements are cheap, the trips to the server are not.
        cursor.execute(";\n".join(plan))
        cursor.execute("SET LOCAL search_path = public")
    return True


_clone_plans: dict[int, list[str] | None] = {}


def _clone_plan(cursor, source: str) -> list[str] | None:
    """The statements that rebuild ``source`` in the schema first on the search_path, or None
    when ``source`` holds something this copy does not reproduce."""
    cursor.execute(
        """
        SELECT (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind NOT IN ('r', 'i', 'S')),
               (SELECT count(*) FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
                 WHERE c.relnamespace = n.oid AND pg_get_expr(d.adbin, d.adrelid) LIKE '%%nextval%%'),
               (SELECT count(*) FROM pg_class s WHERE s.relnamespace = n.oid AND s.relkind = 'S'
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = s.oid AND d.deptype = 'i')),
               (SELECT count(*) FROM pg_type t WHERE t.typnamespace = n.oid AND t.typtype NOT IN ('c', 'b')),
               (SELECT count(*) FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace = n.oid)
          FROM pg_namespace n WHERE n.nspname = %s
        """,
        [source],
    )
    if any(cursor.fetchone()):
        return None  # views, partitions, serial defaults, free sequences, own types, policies
    # Definitions print unqualified for the template's own objects (and qualified for public's).
    cursor.execute(f'SET LOCAL search_path = "{source}"')
    quoted_source = connection.ops.quote_name(source)
    plan: list[str] = []
    cursor.execute(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.pronamespace = %s::regnamespace ORDER BY p.oid",
        [source],
    )
    for (definition,) in cursor.fetchall():
        head, _newline, body = definition.partition("\n")
        head = head.replace(f"{quoted_source}.", "", 1).replace(f"{source}.", "", 1)
        if source in head or source in body:
            return None
        plan.append(head + "\n" + body)
    cursor.execute(
        """
        SELECT quote_ident(c.relname), c.relpersistence, c.reloptions,
               (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')
          FROM pg_class c WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'r' ORDER BY c.relname
        """,
        [source],
    )
    for table, persistence, options, columns in cursor.fetchall():
        unlogged = "UNLOGGED " if persistence == "u" else ""
        plan.append(
            f"CREATE {unlogged}TABLE {table} (LIKE {quoted_source}.{table} INCLUDING DEFAULTS INCLUDING IDENTITY "
            "INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS INCLUDING COMPRESSION)"
        )
        if options:
            plan.append(f"ALTER TABLE {table} SET ({', '.join(options)})")
        plan.append(
            f"INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {quoted_source}.{table}"
        )
    # Identity sequences: LIKE makes them under the same names; give them the template's type,
    # bounds and options, and continue where the template's stand.
    cursor.execute(
        """
        SELECT quote_ident(s.relname), format_type(q.seqtypid, NULL), q.seqstart, q.seqincrement, q.seqmin,
               q.seqmax, q.seqcache, q.seqcycle
          FROM pg_class s JOIN pg_sequence q ON q.seqrelid = s.oid
         WHERE s.relnamespace = %s::regnamespace ORDER BY s.relname
        """,
        [source],
    )
    for sequence, kind, start, increment, minimum, maximum, cache, cycle in cursor.fetchall():
        cursor.execute(f"SELECT last_value, is_called FROM {quoted_source}.{sequence}")
        last_value, is_called = cursor.fetchone()
        plan.append(
            f"ALTER SEQUENCE {sequence} AS {kind} MINVALUE {int(minimum)} MAXVALUE {int(maximum)} START {int(start)} "
            f"INCREMENT {int(increment)} CACHE {int(cache)} {'CYCLE' if cycle else 'NO CYCLE'}"
        )
        plan.append(f"SELECT setval('{sequence}', {int(last_value)}, {'true' if is_called else 'false'})")
    # Constraints under their own names: keys first (foreign keys need them), then checks, then
    # foreign keys; NOT NULL came with LIKE.
    cursor.execute(
        """
        SELECT quote_ident(c.relname), quote_ident(k.conname), pg_get_constraintdef(k.oid)
          FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
         WHERE c.relnamespace = %s::regnamespace AND k.contype IN ('p', 'u', 'x', 'c', 'f')
         ORDER BY array_position(ARRAY['p', 'u', 'x', 'c', 'f']::"char"[], k.contype), c.relname, k.conname
        """,
        [source],
    )
    plan.extend(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}" for table, name, definition in cursor.fetchall())
    cursor.execute(
        """
        SELECT pg_get_indexdef(i.indexrelid)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
         WHERE c.relnamespace = %s::regnamespace
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                              AND k.contype IN ('p', 'u', 'x'))
         ORDER BY i.indexrelid
        """,
        [source],
    )
    definitions = [definition for (definition,) in cursor.fetchall()]
    cursor.execute(
        """
        SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE c.relnamespace = %s::regnamespace AND NOT t.tgisinternal ORDER BY c.relname, t.tgname
        """,
        [source],
    )
    definitions += [definition for (definition,) in cursor.fetchall()]
    cursor.execute("SET LOCAL search_path = public")
    # Index and trigger definitions name their table with its schema: the target's, here.
    for definition in definitions:
        local = definition.replace(f" ON {quoted_source}.", " ON ", 1).replace(f" ON {source}.", " ON ", 1)
        if source in local:
            return None  # a reference to the template this copy cannot tell apart: migrate instead
        plan.append(local)
    return plan
