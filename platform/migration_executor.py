"""``migrate_schemas --executor=batched``: new migrations across thousands of county schemas.

django-tenants' executors run Django's whole ``migrate`` command in every schema: build the
migration graph, list the schema's tables to see whether ``django_migrations`` exists (a query
over all of ``pg_class`` — a million relations with 3,000 counties), render every model of the
project state, apply, then run the autodetector and the post-migrate handlers. Per schema that
is seconds, and with thousands of schemas in one catalog it grows with their number
(docs/SCALING.md measured ~64 minutes for one no-op migration over 3,000 counties).

Every county schema holds the same migrations (none depends on the county), so this executor
plugs into django-tenants (``GET_EXECUTOR_FUNCTION``) and does the per-schema part once:

1. reads every schema's ``django_migrations`` in a few ``UNION ALL`` queries and groups the
   schemas by what they have applied — normally one group; schemas that already hold every
   target migration are skipped without being touched;
2. per group, computes the plan and renders the project state before it once;
3. per schema: one connection (kept across schemas), ``search_path`` set, ``django_migrations``
   checked with ``to_regclass`` (an index lookup), Django's own ``MigrationExecutor.migrate``
   with the plan and a copy of the rendered state (each migration in its own transaction when
   atomic, as always), then the ``post_migrate`` signal (content types and permissions of new
   models) — by ``TENANT_MULTIPROCESSING_MAX_PROCESSES`` forked processes.

The first schema that fails stops the run: the error names the schema, its failed migration
was rolled back (atomic migrations), schemas already done stay done, and a rerun continues
where it stopped (what is applied is read again). Only forward migrations of the tenant apps
go this way; for anything else (unapplying, ``--fake-initial``, ``--plan``, ``--prune``,
``--check``, ``--run-syncdb``, squashed migrations) it refuses with a message naming the
executor to use. The public schema is migrated the ordinary way.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.sql import emit_post_migrate_signal, emit_pre_migrate_signal
from django.db import connections
from django.db.migrations.exceptions import AmbiguityError
from django.db.migrations.executor import MigrationExecutor as DjangoMigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.db.migrations.state import ProjectState
from django_tenants.migration_executors import get_executor as tenants_get_executor
from django_tenants.migration_executors.base import MigrationExecutor, run_migrations
from django_tenants.signals import schema_migrated, schema_pre_migration

CODENAME = "batched"
BATCH = 500  # schemas per UNION ALL query when reading what each has applied
UNSUPPORTED = {
    "fake_initial": "--fake-initial",
    "plan": "--plan",
    "prune": "--prune",
    "check_unapplied": "--check",
    "run_syncdb": "--run-syncdb",
}

Node = tuple[str, str]


def refused(zh: str, en: str, *, other: bool = True) -> CommandError:
    """A refusal in Chinese and English; ``other`` adds which executor does what this one does not."""
    if other:
        zh, en = f"{zh}，请使用 --executor=multiprocessing", f"{en}; use --executor=multiprocessing"
    return CommandError(f"--executor={CODENAME}：{zh}。 / --executor={CODENAME} {en}.")


def get_executor(codename: str | None = None):
    """django-tenants' ``GET_EXECUTOR_FUNCTION``: this executor for ``--executor=batched``,
    django-tenants' own for the others."""
    return BatchedExecutor if codename == CODENAME else tenants_get_executor(codename)


class SchemaRecorder(MigrationRecorder):
    """Django's recorder for one schema, asking PostgreSQL whether that schema has the table
    (``to_regclass``) instead of listing every table visible on the search path."""

    def __init__(self, connection, schema: str) -> None:
        super().__init__(connection)
        self.schema = schema

    def has_table(self) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f'"{self.schema}".{self.Migration._meta.db_table}'])
            return cursor.fetchone()[0]


@dataclass
class Group:
    """Schemas with the same applied migrations: one plan, one rendered state before it."""

    applied: frozenset[Node]
    plan: list
    state: ProjectState | None = None


# Set by the parent before it forks; the pool's processes inherit them.
_executor: DjangoMigrationExecutor | None = None
_groups: list[Group] = []
_targets: list[Node] = []
_options: dict = {}


def _django_executor() -> DjangoMigrationExecutor:
    """Django's executor with the graph loaded from the migration files only (no query)."""
    global _executor
    if _executor is None:
        _executor = DjangoMigrationExecutor(None)
        _executor.connection = connections[_options.get("database", "default")]
    return _executor


def _targets_of(executor: DjangoMigrationExecutor, options: dict) -> list[Node]:
    """The migrations to reach, as Django's ``migrate`` reads its arguments."""
    graph = executor.loader.graph
    app_label, name = options.get("app_label"), options.get("migration_name")
    if not app_label:
        return list(graph.leaf_nodes())
    if app_label not in executor.loader.migrated_apps:
        raise refused(f"应用 {app_label} 没有迁移", f"App '{app_label}' does not have migrations")
    if not name:
        return [key for key in graph.leaf_nodes() if key[0] == app_label]
    if name == "zero":
        raise refused("只能执行迁移，不能回退", "only applies migrations, it does not unapply them")
    try:
        migration = executor.loader.get_migration_by_prefix(app_label, name)
    except (KeyError, AmbiguityError) as error:
        raise refused(f"在应用 {app_label} 中找不到唯一的迁移 {name}",
                      f"cannot find one migration '{name}' in app '{app_label}' ({error})", other=False) from error
    return [(app_label, migration.name)]


def applied_by_schema(connection, schemas: list[str]) -> dict[str, frozenset[Node]]:
    """Each schema's recorded migrations, ``BATCH`` schemas per query; a schema without the
    table has none. A schema that does not exist is an error."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s, n.oid IS NOT NULL, to_regclass(format('%%I.django_migrations', s)) IS NOT NULL"
            " FROM unnest(%s::text[]) AS s LEFT JOIN pg_namespace n ON n.nspname = s",
            [schemas],
        )
        found = {schema: (exists, has_table) for schema, exists, has_table in cursor.fetchall()}
        missing = sorted(schema for schema, (exists, _) in found.items() if not exists)
        if missing:
            names = ", ".join(missing[:20])
            raise refused(f"这些县的 schema 不存在：{names}", f"these county schemas do not exist: {names}", other=False)
        applied: dict[str, set[Node]] = {schema: set() for schema in schemas}
        with_table = [schema for schema in schemas if found[schema][1]]
        for start in range(0, len(with_table), BATCH):
            batch = with_table[start:start + BATCH]
            union = " UNION ALL ".join(
                f"SELECT %s, app, name FROM {connection.ops.quote_name(schema)}.django_migrations" for schema in batch
            )
            cursor.execute(union, batch)
            for schema, app, name in cursor.fetchall():
                applied[schema].add((app, name))
    return {schema: frozenset(nodes) for schema, nodes in applied.items()}


def _plan_groups(executor: DjangoMigrationExecutor, applied: dict[str, frozenset[Node]],
                 targets: list[Node]) -> tuple[list[Group], list[tuple[str, int]], int]:
    """The groups, the (schema, group) pairs with work to do, and how many schemas are current."""
    graph = executor.loader.graph
    groups: dict[frozenset[Node], int] = {}
    ordered: list[Group] = []
    work: list[tuple[str, int]] = []
    current = 0
    for schema, nodes in applied.items():
        known = frozenset(node for node in nodes if node in graph.nodes)
        if known not in groups:
            executor.loader.applied_migrations = {node: graph.nodes[node] for node in known}
            plan = executor.migration_plan(targets)
            if any(backwards for _migration, backwards in plan):
                raise refused(f"{schema} 已超过目标迁移；只能执行迁移，不能回退",
                              f"{schema} is ahead of the target; it only applies migrations, it does not unapply them")
            groups[known] = len(ordered)
            ordered.append(Group(applied=known, plan=plan))
        index = groups[known]
        if ordered[index].plan:
            work.append((schema, index))
        else:
            current += 1
    for group in ordered:
        if group.plan:  # rendered once here, inherited by every forked process
            executor.loader.applied_migrations = {node: graph.nodes[node] for node in group.applied}
            group.state = executor._create_project_state(with_applied_migrations=True)
            group.state.apps  # noqa: B018 - render every model now, not once per schema
    return ordered, work, current


def migrate_schema(schema: str, group_index: int) -> tuple[str, float, str | None]:
    """Apply the group's plan in ``schema``; (schema, seconds, error or None). Never raises:
    the parent decides what a failure stops."""
    started = time.perf_counter()
    executor = _django_executor()
    connection = executor.connection
    group = _groups[group_index]
    verbosity = int(_options.get("verbosity", 1))
    try:
        schema_pre_migration.send(run_migrations, schema_name=schema)
        connection.set_schema(schema)
        executor.recorder = SchemaRecorder(connection, schema)
        emit_pre_migrate_signal(0, False, connection.alias, apps=group.state.apps, plan=group.plan)
        state = executor.migrate(_targets, plan=group.plan, state=group.state.clone(),
                                 fake=bool(_options.get("fake")))
        state.clear_delayed_apps_cache()
        emit_post_migrate_signal(0, False, connection.alias, apps=state.apps, plan=group.plan)
        schema_migrated.send(run_migrations, schema_name=schema)
    except Exception as error:  # reported with the schema's name by the parent
        return schema, time.perf_counter() - started, f"{type(error).__name__}: {error}"
    finally:
        connection.set_schema_to_public()
    if verbosity >= 2:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in group.plan)
        print(f"[{CODENAME}:{schema}] applied {names} in {time.perf_counter() - started:.2f} s", flush=True)
    return schema, time.perf_counter() - started, None


def _migrate_schema_star(pair: tuple[str, int]) -> tuple[str, float, str | None]:
    return migrate_schema(*pair)


class BatchedExecutor(MigrationExecutor):
    codename = CODENAME

    def run_migrations(self, tenants=None) -> None:
        tenants = list(tenants or [])
        if self.PUBLIC_SCHEMA_NAME in tenants:  # the shared apps: Django's migrate, as always
            run_migrations(self.args, self.options, self.codename, self.PUBLIC_SCHEMA_NAME)
            tenants.remove(self.PUBLIC_SCHEMA_NAME)
        if tenants:
            migrate_counties(tenants, self.options)

    def run_multi_type_migrations(self, tenants) -> None:
        raise refused("不支持多类型租户", "does not support multi-type tenants")


def migrate_counties(schemas: list[str], options: dict) -> dict:
    """Apply the target migrations to every schema that lacks them (see the module's text).
    Returns the counts; raises CommandError naming the first schema that failed."""
    global _groups, _targets, _options
    for key, flag in UNSUPPORTED.items():
        if options.get(key):
            raise refused(f"不支持 {flag}", f"does not support {flag}")
    started = time.perf_counter()
    verbosity = int(options.get("verbosity", 1))
    _options = options
    executor = _django_executor()
    if executor.loader.replacements:
        raise refused("不支持合并（squashed）迁移", "does not handle squashed migrations")
    _targets = _targets_of(executor, options)
    connection = executor.connection
    connection.set_schema_to_public()
    applied = applied_by_schema(connection, schemas)
    _groups, work, current = _plan_groups(executor, applied, _targets)
    processes = max(1, min(int(getattr(settings, "TENANT_MULTIPROCESSING_MAX_PROCESSES", 2)), len(work)))
    if verbosity >= 1:
        print(f"[{CODENAME}] {len(schemas):,} county schemas: {current:,} already current, {len(work):,} to migrate "
              f"({len([g for g in _groups if g.plan])} plan(s)) by {processes} process(es)", flush=True)
    done, failure = 0, None
    if processes == 1:  # in this process (and inside any transaction the caller holds)
        for pair in work:
            schema, _seconds, error = migrate_schema(*pair)
            if error:
                failure = (schema, error)
                break
            done += 1
    elif work:
        connection.close()  # each forked process opens its own
        context = multiprocessing.get_context("fork")
        with context.Pool(processes) as pool:
            for schema, _seconds, error in pool.imap_unordered(_migrate_schema_star, work, chunksize=8):
                if error:
                    failure = (schema, error)
                    pool.terminate()
                    break
                done += 1
                if verbosity >= 1 and done % 500 == 0:
                    print(f"[{CODENAME}] {done:,}/{len(work):,} migrated after {time.perf_counter() - started:.0f} s",
                          flush=True)
    seconds = time.perf_counter() - started
    if failure:
        schema, error = failure
        raise CommandError(
            f"迁移 {schema} 失败：失败的迁移已回滚，此前已迁移 {done:,} 个 schema，再次运行命令将从此处继续。 / "
            f"Migrating {schema} failed; its failed migration was rolled back, {done:,} schema(s) were migrated "
            f"before the run stopped, and running the command again continues from there. {error}"
        )
    if verbosity >= 1:
        print(f"[{CODENAME}] migrated {done:,} schema(s), {current:,} already current, in {seconds:.1f} s",
              file=sys.stdout, flush=True)
    return {"migrated": done, "current": current, "seconds": seconds}
