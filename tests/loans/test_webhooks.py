"""Events to the bank: outbox messages delivered to a local test receiver with a verifiable
signature; a failing receiver → retries with exponential backoff → dead letter after N
failures → replay delivers; messages without a webhook stay pending; the console shows dead
letters and replays them; the beat dispatch sends one task per county with a webhook."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.utils import timezone

from loans.models import OutboxMessage
from loans.services import loan_drawdown
from loans.webhooks import backoff_delay, dead_letters, outbox_deliver_due, outbox_replay, webhook_signature
from platform.api.services import client_create
from platform.models import OperatorAction
from tests.conftest import in_county


class Receiver:
    """A bank's webhook endpoint on 127.0.0.1: records each POST and answers ``status``."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body, "path": self.path})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/puhui/events"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def hooked(lending, lankao, receiver):
    """(lending, bank client, its secret): the lending partner's bank client with a webhook."""
    created = client_create(
        name="网商银行事件",
        kind="bank",
        partner=lending.partner,
        counties=[lankao],
        webhook_url=receiver.url,
        operator="operator",
    )
    return lending, created.client, created.secret


def a_drawdown(lending) -> OutboxMessage:
    farmer = lending.borrower(line="20000.00", rate="0.0435")
    loan = loan_drawdown(farmer=farmer, amount="5000", term_months=6, method="bullet")
    return OutboxMessage.objects.get(loan=loan, topic="drawdown.requested")


def test_an_event_is_delivered_signed(hooked, receiver, lankao):
    lending, _client, secret = hooked
    message = a_drawdown(lending)

    counts = outbox_deliver_due()

    assert counts.as_dict() == {"delivered": 1, "failed": 0, "dead_lettered": 0, "more_due": False}
    (request,) = receiver.received
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/puhui/events"
    expected = hmac.new(
        secret.encode(), headers["X-Puhui-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["X-Puhui-Signature"] == expected == webhook_signature(secret, headers["X-Puhui-Timestamp"], body)
    assert abs(int(headers["X-Puhui-Timestamp"]) - timezone.now().timestamp()) < 60
    assert headers["X-Puhui-Topic"] == "drawdown.requested"
    assert headers["X-Puhui-Event-Id"] == f"410225:{message.pk}"
    assert json.loads(body) == {
        "id": message.pk,
        "topic": "drawdown.requested",
        "county": "410225",
        "created_at": message.created_at.isoformat(),
        "payload": message.payload,
    }
    assert json.loads(body)["payload"]["amount"] == "5000.00"
    message.refresh_from_db()
    assert (message.attempts, message.last_error, message.next_attempt_at) == (1, "", None)
    assert message.delivered_at is not None
    # Delivered once: another run sends nothing.
    assert outbox_deliver_due().delivered == 0
    assert len(receiver.received) == 1


def test_failures_back_off_then_dead_letter_and_a_replay_delivers(hooked, receiver, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 4
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 30
    lending, _client, _secret = hooked
    message = a_drawdown(lending)
    receiver.status = 503
    start = timezone.now()

    first = outbox_deliver_due(now=start)
    message.refresh_from_db()
    assert first.as_dict() == {"delivered": 0, "failed": 1, "dead_lettered": 0, "more_due": False}
    assert (message.attempts, message.last_error) == (1, "HTTP 503")
    assert message.next_attempt_at == start + dt.timedelta(seconds=30)
    # Not due again before its backoff.
    assert outbox_deliver_due(now=start + dt.timedelta(seconds=29)).failed == 0
    assert len(receiver.received) == 1

    waits = []
    moment = message.next_attempt_at
    for _attempt in range(2):
        outbox_deliver_due(now=moment)
        message.refresh_from_db()
        waits.append((message.next_attempt_at - moment).total_seconds())
        moment = message.next_attempt_at
    assert waits == [60.0, 120.0]  # 30 · 2^attempts

    last = outbox_deliver_due(now=moment)
    message.refresh_from_db()
    assert last.dead_lettered == 1
    assert (message.attempts, message.dead_lettered_at, message.next_attempt_at) == (4, moment, None)
    assert message.delivered_at is None
    assert len(receiver.received) == 4
    # A dead letter is never picked up again by itself.
    assert outbox_deliver_due(now=moment + dt.timedelta(days=30)).as_dict()["failed"] == 0
    assert len(receiver.received) == 4

    receiver.status = 204
    assert outbox_replay(message_ids=[message.pk]) == 1
    replayed = outbox_deliver_due()
    message.refresh_from_db()
    assert replayed.delivered == 1
    assert (message.attempts, message.dead_lettered_at, message.last_error) == (1, None, "")
    assert message.delivered_at is not None
    assert len(receiver.received) == 5


def test_the_backoff_is_capped(settings):
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 30
    settings.OUTBOX_BACKOFF_CAP_SECONDS = 3600

    assert [backoff_delay(n).total_seconds() for n in (0, 1, 6, 7, 20)] == [30, 60, 1920, 3600, 3600]


def test_an_unreachable_webhook_is_a_failed_attempt(lending, lankao):
    with Receiver() as gone:
        url = gone.url  # nothing listens there once the receiver has stopped
    client_create(
        name="停机的银行", kind="bank", partner=lending.partner, counties=[lankao], webhook_url=url, operator="operator"
    )
    message = a_drawdown(lending)

    assert outbox_deliver_due().failed == 1
    message.refresh_from_db()
    assert message.attempts == 1
    assert message.last_error.startswith("URLError")


def test_messages_without_a_webhook_client_stay_pending(lending, lankao, receiver):
    # A client for the partner, but without a webhook; and a webhook client for another county.
    client_create(name="无推送", kind="bank", partner=lending.partner, counties=[lankao], operator="operator")
    from platform.models import County

    client_create(
        name="别的县",
        kind="bank",
        partner=lending.partner,
        counties=[County.objects.get(code="341524")],
        webhook_url=receiver.url,
        operator="operator",
    )
    message = a_drawdown(lending)

    assert outbox_deliver_due().as_dict() == {"delivered": 0, "failed": 0, "dead_lettered": 0, "more_due": False}
    message.refresh_from_db()
    assert (message.attempts, message.delivered_at, message.next_attempt_at) == (0, None, None)
    assert receiver.received == []


def test_a_batch_stops_at_its_size_and_says_more_are_due(hooked, receiver):
    lending, _client, _secret = hooked
    messages = [a_drawdown(lending) for _ in range(3)]

    first = outbox_deliver_due(batch_size=2)
    second = outbox_deliver_due(batch_size=2)

    assert (first.delivered, first.more_due) == (2, True)
    assert (second.delivered, second.more_due) == (1, False)
    assert [json.loads(r["body"])["id"] for r in receiver.received] == [m.pk for m in messages]


def test_the_console_lists_dead_letters_and_replays_them(admin_client, hooked, receiver, lankao):
    lending, _client, _secret = hooked
    message = a_drawdown(lending)
    OutboxMessage.objects.filter(pk=message.pk).update(
        attempts=8, dead_lettered_at=timezone.now(), last_error="HTTP 500"
    )
    assert [(d.county.code, d.message.pk) for d in dead_letters()] == [("410225", message.pk)]
    connection.set_schema_to_public()

    page = admin_client.get("/admin/platform/integrationclient/dead-letters/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'value="410225:{message.pk}"' in html
    assert "drawdown.requested" in html and "HTTP 500" in html

    replay = admin_client.post("/admin/platform/integrationclient/dead-letters/", {"message": [f"410225:{message.pk}"]})
    assert replay.status_code == 302
    assert OperatorAction.objects.filter(action="outbox.replay", operator="admin").get().detail == {
        "message_ids": [message.pk],
        "replayed": 1,
    }
    with in_county(lankao):
        message.refresh_from_db()
        assert (message.attempts, message.dead_lettered_at) == (0, None)
        assert outbox_deliver_due().delivered == 1
    assert len(receiver.received) == 1


def test_beat_dispatches_one_delivery_task_per_county_with_a_webhook(hooked, monkeypatch, lankao, jinzhai):
    from loans import tasks

    lending, _client, _secret = hooked
    # Another client of the same county without a webhook does not hide it; a county whose only
    # client has no webhook gets no task.
    client_create(name="只查询", kind="bank", partner=lending.partner, counties=[lankao, jinzhai], operator="o")

    sent = []

    def fake_apply_async(**options):
        sent.append((connection.schema_name, options))

        class Result:
            id = "task-id"

        return Result()

    monkeypatch.setattr(tasks.outbox_deliver_county, "apply_async", fake_apply_async)
    connection.set_schema_to_public()

    assert tasks.dispatch_outbox_delivery() == {"410225": "task-id"}
    assert sent == [("county_410225", {"expires": 60})]
