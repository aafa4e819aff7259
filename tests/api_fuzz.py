"""The schemathesis run both API test modules share (bank: tests/loans/test_api.py,
department: tests/platform/test_department_api.py): every operation with valid and invalid
generated requests and its documented examples, derandomized, each response checked against
the schema."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application
from django.db import connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# About 7 operations × (12 valid + 8 invalid + the documented examples) signed requests: ~20 s.
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}


def is_positive(case) -> bool:
    return case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE


def fuzz(schema, operations, *, auth, prepare: Callable[[object], None]) -> Counter[tuple[str, int]]:
    """Call every operation's generated and example cases with ``auth`` after ``prepare(case)``
    (which points path parameters at real rows), validate every response with :data:`CHECKS`,
    and count (operation, status) pairs for the caller's own assertions."""
    seen: Counter[tuple[str, int]] = Counter()

    def run(strategy, **options) -> None:
        @settings(
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
            **options,
        )
        @given(case=strategy)
        def check(case) -> None:
            prepare(case)
            response = case.call(auth=auth, timeout=30)
            seen[(case.operation.label, response.status_code)] += 1
            case.validate_response(response, checks=CHECKS)

        check()

    for operation in operations:
        for mode, count in EXAMPLES.items():
            run(operation.as_strategy(generation_mode=mode), max_examples=count)
        for strategy in schema.get_strategies_from_examples(operation):
            run(strategy, max_examples=3)
    return seen


@contextmanager
def live_app() -> Iterator[str]:
    """The whole Django app on a real local HTTP server (threads, real connections); yields
    its base URL."""
    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler, allow_reuse_address=False)
    server.set_app(get_wsgi_application())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        connections.close_all()
