"""Idempotency keys for writes a farmer or a partner may repeat (a double tap, a retried
request). The first request claims the key in its own committed row; a repeat with the same
request gets the first result back, a repeat while the first is still running is refused
(HTTP 409), and the same key with a different request is refused (HTTP 422)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from loans.models import IdempotencyRecord

MAX_KEY_LENGTH = 128


class IdempotencyError(Exception):
    status_code = 409
    code = "idempotency_in_progress"

    def __init__(self, message) -> None:
        super().__init__(str(message))
        self.message = message


class IdempotencyInProgress(IdempotencyError):
    pass


class IdempotencyKeyReused(IdempotencyError):
    status_code = 422
    code = "idempotency_key_reused"


class IdempotencyKeyInvalid(IdempotencyError):
    status_code = 400
    code = "idempotency_key_invalid"


def request_fingerprint(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def idempotent(
    *, scope: str, key: str, operation: str, request: dict[str, Any], run: Callable[[], tuple[int, dict]]
) -> tuple[int, dict]:
    """Run ``run`` (returning an HTTP status and a JSON-ready body) at most once for
    (``scope``, ``key``) and store its result; return the stored result for a repeat.

    Must be called outside a transaction: the claim has to be committed to be seen by a
    concurrent repeat. A ``run`` that raises releases the claim so the request can be retried.
    """
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise IdempotencyKeyInvalid(_("幂等键须为 1–128 个可打印字符"))
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("idempotent() must run outside a transaction")
    fingerprint = request_fingerprint({"operation": operation, **request})
    try:
        record = IdempotencyRecord.objects.create(scope=scope, key=key, operation=operation, request_hash=fingerprint)
    except IntegrityError:
        first = IdempotencyRecord.objects.get(scope=scope, key=key)
        if first.request_hash != fingerprint:
            raise IdempotencyKeyReused(_("该幂等键已用于另一个请求")) from None
        if not first.completed:
            raise IdempotencyInProgress(_("相同的请求正在处理中，请稍后再查看结果")) from None
        return first.status_code, first.response
    try:
        status_code, body = run()
    except BaseException:
        record.delete()
        raise
    IdempotencyRecord.objects.filter(pk=record.pk).update(completed=True, status_code=status_code, response=body)
    return status_code, body
