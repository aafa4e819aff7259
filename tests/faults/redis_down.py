"""Redis unreachable, for one test: the Django cache and the Celery broker and result backend
pointed at a closed port on this machine (connection refused at once — what clients see while
Redis is down), then put back. The shared Redis other processes use is never touched.

One difference from production, for the suite's time only: the result backend gives up after
one reconnect instead of Celery's default policy (20 tries a second apart). With that default
every request that sends a task while Redis is down waits ~19 s before the send fails (with
``RuntimeError: Retry limit exceeded while trying to reconnect to the Celery result store``,
raised by the Redis result backend subscribing to the new task's result) — reported, not
changed here; the outcome is the same failed send either way."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.test import override_settings

from platform.celery import app


def closed_port() -> int:
    """A port nothing listens on: bound, read, released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Celery's broker and result backend at ``url`` for the block: the app's connection and
    producer pools and its result backend are set aside (so the next send connects to ``url``)
    and put back afterwards, untouched."""
    saved_conf = app.conf.broker_url, app.conf.result_backend, app.conf.result_backend_transport_options
    saved_pools = app._pool, app.amqp._producer_pool
    saved_backends = app._backend_cache, getattr(app._local, "backend", None)

    def forget() -> None:
        app._pool, app.amqp._producer_pool, app._backend_cache = None, None, None
        app._local.__dict__.pop("backend", None)

    app.conf.broker_url = app.conf.result_backend = url
    app.conf.result_backend_transport_options = {"retry_policy": {"max_retries": 1}}
    forget()
    try:
        yield
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app.conf.result_backend, app.conf.result_backend_transport_options = saved_conf
        forget()
        app._pool, app.amqp._producer_pool = saved_pools
        app._backend_cache = saved_backends[0]
        if saved_backends[1] is not None:
            app._local.backend = saved_backends[1]


@contextmanager
def redis_down() -> Iterator[str]:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    cache = {**settings.CACHES["default"], "LOCATION": url}
    with override_settings(CACHES={"default": cache}), celery_broker(url):
        yield url
