"""A database and a Redis database of their own for the heavy benchmarks (load_portals,
many_counties, nightly_3x300k), so thousands of scratch schemas, 900,000 scratch farmers and
their Celery messages never land in the development database or reach a developer's worker.

A benchmark calls :func:`run_isolated` first thing. When this process is already pointed at the
benchmark's database (``DATABASE_URL=…/puhui_bench``) it returns ``None`` and the benchmark runs
here; otherwise it creates the database on the *same server* as the configured one (the
embedded PostgreSQL by default), runs the same module again in a subprocess with
``DATABASE_URL``, ``REDIS_URL`` and the Celery URLs pointed at it and at Redis database
:data:`REDIS_DB` of the same Redis, and returns the rows the subprocess wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
REDIS_DB = 5  # the development cache and broker use database 0
ROWS_ENV = "PUHUI_BENCH_ROWS_FILE"


def database_url(name: str) -> str:
    """The configured server (host or socket directory, port, user, password), database ``name``."""
    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host = str(db.get("HOST") or db.get("OPTIONS", {}).get("host") or "127.0.0.1")
    if host.startswith("/"):  # a socket directory: django-environ takes it from the query string
        return f"postgres://{user}{password}@/{name}?host={quote(host)}"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{user}{password}@{host}{port}/{name}"


def redis_urls(db_number: int = REDIS_DB) -> dict[str, str]:
    """REDIS_URL (redis-py) and the Celery URLs (kombu) for database ``db_number`` of the
    configured Redis. The two spell a Unix socket's database differently."""
    url = settings.REDIS_URL
    if url.startswith("unix://"):
        path = url.removeprefix("unix://").split("?", 1)[0]
        cache, kombu = f"unix://{path}?db={db_number}", f"redis+socket://{path}?virtual_host={db_number}"
    else:
        base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
        cache = kombu = f"{base}/{db_number}"
    return {"REDIS_URL": cache, "CELERY_BROKER_URL": kombu, "CELERY_RESULT_BACKEND": kombu}


def _maintenance_connection():
    """A connection to the server's ``postgres`` database (the configured one may not exist yet)."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params["dbname"] = "postgres"
    return psycopg.connect(**params, autocommit=True)


def ensure_database(name: str) -> bool:
    """Create ``name`` on the configured server if missing; True when it was created."""
    with _maintenance_connection() as maintenance:
        if maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        print(f"creating database {name} on the configured PostgreSQL server", flush=True)
        maintenance.execute(f'CREATE DATABASE "{name}"')
        return True


def migrate_shared(env: dict[str, str] | None = None) -> None:
    """The public schema's tables, and any county kept from an earlier run brought up to the
    code's migrations (as ``make demo`` does)."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate_schemas", "--executor=batched", "-v", "0"], cwd=BASE_DIR,
        env=env or dict(os.environ), check=True,
    )


def drop_database(name: str) -> None:
    """Drop ``name`` (never the database this process is connected to)."""
    if name == settings.DATABASES["default"]["NAME"]:
        raise ValueError("refusing to drop the database in use")
    with _maintenance_connection() as maintenance:
        maintenance.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def isolated_env(database: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(database),
        **redis_urls(),
        "DJANGO_SETTINGS_MODULE": "platform.settings",
    }


def is_isolated(database: str) -> bool:
    return settings.DATABASES["default"]["NAME"] == database


def run_isolated(module: str, database: str, argv: list[str]) -> list[dict] | None:
    """Rows of ``python -m <module> <argv>`` run against ``database``, or None when this process
    is already there (then the caller runs the benchmark itself)."""
    if is_isolated(database):
        if ensure_database(database):  # DATABASE_URL named it, but it is new
            migrate_shared()
        return None
    ensure_database(database)
    env = isolated_env(database)
    print(f"running {module} in database {database} (Redis db {REDIS_DB}) in a subprocess", flush=True)
    migrate_shared(env)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        rows_file = handle.name
    try:
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", module, *argv], cwd=BASE_DIR, env={**env, ROWS_ENV: rows_file}, check=True
        )
        text = Path(rows_file).read_text()
        return json.loads(text) if text else []
    finally:
        Path(rows_file).unlink(missing_ok=True)


def write_rows(rows: list[dict]) -> None:
    """In the subprocess: hand the rows back to :func:`run_isolated`."""
    path = os.environ.get(ROWS_ENV)
    if path:
        Path(path).write_text(json.dumps(rows, default=str))


def report(rows: list[dict], database: str) -> None:
    """A module's ``main()`` ends here: in the subprocess :func:`run_isolated` started, hand the
    rows back; run by hand, print them as ``make bench``'s table."""
    if is_isolated(database):
        write_rows(rows)
    else:
        from benchmarks.__main__ import table

        print()
        print(table(rows))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]
