"""A Celery worker in a process of its own, for tests that kill it: ``python -m
tests.faults.worker_process QUEUE`` from the repository root.

It runs the project's app exactly as ``python -m celery -A platform.celery worker`` would
(pool ``solo``: tasks run in this very process, so a SIGKILL of this pid kills the task
mid-flight), on the test session's database (``FAULTS_DATABASE_NAME``) and queue.

``FAULTS_STALL_CHUNK=N`` makes the credit batch stall in chunk N, once: the chunk's gate
reads and writes happen inside its transaction, then the file ``FAULTS_STALL_MARKER`` is
created and the task sleeps, holding the transaction open — a worker busy in the middle of
a chunk, waiting to be killed."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path


def main(queue: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform.settings")
    from django.conf import settings

    # Before the first connection: the test database, not the development one.
    settings.DATABASES["default"]["NAME"] = os.environ["FAULTS_DATABASE_NAME"]

    import django

    django.setup()

    stall = int(os.environ.get("FAULTS_STALL_CHUNK", "0"))
    if stall:
        from loans import nightly

        marker = Path(os.environ["FAULTS_STALL_MARKER"])
        real = nightly._assess_chunk

        def stalling(chunk):
            counts = real(chunk)
            if chunk.number == stall and not marker.exists():
                marker.write_text(str(os.getpid()))
                time.sleep(3600)  # until killed
            return counts

        nightly._assess_chunk = stalling

    from platform.celery import app

    app.worker_main(
        [
            "worker", "--pool=solo", "--concurrency=1", f"--queues={queue}", "--loglevel=WARNING",
            f"--hostname=faults-{uuid.uuid4().hex[:8]}@%h", "--without-gossip", "--without-mingle",
            "--without-heartbeat",
        ]
    )


if __name__ == "__main__":
    main(sys.argv[1])
