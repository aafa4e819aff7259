"""Events to the bank: deliver the county's transactional outbox (``OutboxMessage``: the topics
``drawdown.requested``, ``repayment.debit_requested``, ``line.changed``, ``loan.overdue``) to the
webhook of the lending partner's bank client.

Each event is one POST of JSON ``{"id", "topic", "county", "created_at", "payload"}`` (``id``
is unique within the county: a bank deduplicates on (county, id), since delivery is at least
once) with the headers ``X-Puhui-Timestamp`` (unix seconds) and ``X-Puhui-Signature`` = hex
HMAC-SHA256 under the client's secret of ``timestamp + "." + body``. A 2xx answer delivers it;
anything else (an error status, a redirect, a timeout, a refused connection) is a failed
attempt, retried after ``base · 2^attempts`` seconds (capped), and after
``OUTBOX_MAX_ATTEMPTS`` failures (default 8) the message is dead-lettered: it stays in the
county, visible in the admin console, until an operator replays it (:func:`outbox_replay`).

Messages whose partner has no active bank client with a webhook for this county stay pending
and untouched (attempts are not spent) until one is configured.

Workers may overlap (beat sends every minute; a county's run may take longer): each message is
claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` in its own short transaction, so no two
workers post the same message at once and neither waits for the other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_tenants.utils import schema_context

from loans.models import OutboxMessage
from platform.api.services import client_secret
from platform.models import County, IntegrationClient

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_BACKOFF_BASE_SECONDS = 30
DEFAULT_BACKOFF_CAP_SECONDS = 6 * 3600
DEFAULT_TIMEOUT_SECONDS = 10
# One task delivers at most this many messages, then re-queues itself if more are due: with a
# 10 s timeout a batch holds a worker for at most ~17 minutes in the worst case.
DEFAULT_BATCH_SIZE = 100
TIMESTAMP_HEADER = "X-Puhui-Timestamp"
SIGNATURE_HEADER = "X-Puhui-Signature"
USER_AGENT = "Puhui-Webhook/1"


def max_attempts() -> int:
    return getattr(settings, "OUTBOX_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)


def backoff_delay(attempts: int) -> dt.timedelta:
    """The wait after a failed attempt, ``attempts`` being the attempts made before it."""
    base = getattr(settings, "OUTBOX_BACKOFF_BASE_SECONDS", DEFAULT_BACKOFF_BASE_SECONDS)
    cap = getattr(settings, "OUTBOX_BACKOFF_CAP_SECONDS", DEFAULT_BACKOFF_CAP_SECONDS)
    return dt.timedelta(seconds=min(base * 2**attempts, cap))


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """What the bank recomputes to trust an event: hex HMAC-SHA256(secret, timestamp + "." + body)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def event_body(message: OutboxMessage, *, county_code: str) -> bytes:
    return json.dumps(
        {
            "id": message.pk,
            "topic": message.topic,
            "county": county_code,
            "created_at": message.created_at.isoformat(),
            "payload": message.payload,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def webhook_clients(county: County) -> dict[int, IntegrationClient]:
    """Lending partner id → the bank client that receives its events in ``county`` (the oldest
    active one with a webhook, if a partner has several)."""
    clients = (
        IntegrationClient.objects.filter(kind=IntegrationClient.Kind.BANK, is_active=True, counties=county)
        .exclude(webhook_url="")
        .order_by("-id")
    )
    return {client.partner_id: client for client in clients}


def _due(partner_ids, now: dt.datetime) -> QuerySet[OutboxMessage]:
    return OutboxMessage.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        delivered_at__isnull=True,
        dead_lettered_at__isnull=True,
        partner_id__in=partner_ids,
    )


@dataclass
class DeliveryCounts:
    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    more_due: bool = False

    def as_dict(self) -> dict:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "dead_lettered": self.dead_lettered,
            "more_due": self.more_due,
        }


def outbox_deliver_due(*, batch_size: int = DEFAULT_BATCH_SIZE, now: dt.datetime | None = None) -> DeliveryCounts:
    """Deliver up to ``batch_size`` due messages of the current county schema, oldest first.
    ``now`` (default: the clock) decides what is due and when a failure is retried."""
    county = County.objects.get(schema_name=connection.schema_name)
    clients = webhook_clients(county)
    counts = DeliveryCounts()
    if not clients:
        return counts
    for _number in range(batch_size):
        moment = now or timezone.now()
        with transaction.atomic():
            message = (
                _due(clients.keys(), moment)
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("created_at", "id")
                .first()
            )
            if message is None:
                break
            outcome = _attempt(message, county=county, client=clients[message.partner_id], now=moment)
        setattr(counts, outcome, getattr(counts, outcome) + 1)
    else:
        counts.more_due = _due(clients.keys(), now or timezone.now()).exists()
    return counts


def _attempt(message: OutboxMessage, *, county: County, client: IntegrationClient, now: dt.datetime) -> str:
    body = event_body(message, county_code=county.code)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(client_secret(client), timestamp, body),
        "X-Puhui-Topic": message.topic,
        "X-Puhui-Event-Id": f"{county.code}:{message.pk}",
    }
    error = _post(client.webhook_url, body, headers)
    message.attempts += 1
    if error is None:
        message.delivered_at = now
        message.next_attempt_at = None
        message.last_error = ""
        outcome = "delivered"
    else:
        message.last_error = error[:2000]
        if message.attempts >= max_attempts():
            message.dead_lettered_at = now
            message.next_attempt_at = None
            outcome = "dead_lettered"
        else:
            message.next_attempt_at = now + backoff_delay(message.attempts - 1)
            outcome = "failed"
    message.save(update_fields=["attempts", "delivered_at", "next_attempt_at", "last_error", "dead_lettered_at"])
    return outcome


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery (the bank should configure the final URL): following it
    would turn the POST into a GET or send the event somewhere it was not configured to go."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: bytes, headers: dict[str, str]) -> str | None:
    """POST ``body``; None when the answer is 2xx, else what went wrong."""
    if not url.startswith(("https://", "http://")):
        return f"unsupported webhook URL: {url}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (scheme checked)
    timeout = getattr(settings, "OUTBOX_WEBHOOK_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS)
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def outbox_replay(*, message_ids: list[int]) -> int:
    """Send dead-lettered messages of the current county again from scratch (attempts reset);
    returns how many were reset. Delivered or still-pending messages are left alone."""
    return OutboxMessage.objects.filter(pk__in=message_ids, dead_lettered_at__isnull=False).update(
        attempts=0, dead_lettered_at=None, next_attempt_at=None, last_error=""
    )


@dataclass(frozen=True)
class DeadLetter:
    county: County
    message: OutboxMessage


def dead_letters(*, limit_per_county: int = 200) -> list[DeadLetter]:
    """Dead-lettered messages of every county, newest first per county (for the console)."""
    found = []
    # Only a county where a bank client received events can have dead letters.
    counties = County.objects.filter(integration_clients__kind=IntegrationClient.Kind.BANK).distinct().order_by("code")
    for county in counties:
        with schema_context(county.schema_name):
            messages = list(
                OutboxMessage.objects.filter(dead_lettered_at__isnull=False).order_by("-dead_lettered_at", "-id")[
                    :limit_per_county
                ]
            )
        found.extend(DeadLetter(county=county, message=message) for message in messages)
    return found
