"""platform/sms.py: the file backend (local default), the console backend and the production
HTTP gateway backend, chosen by settings.SMS_BACKEND."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.exceptions import ImproperlyConfigured

from data_sharing.pii import blind_index
from platform.sms import (
    ConsoleSmsBackend,
    FileSmsBackend,
    HttpSmsGatewayBackend,
    SmsDeliveryError,
    sms_backend,
    sms_outbox,
    sms_send,
)
from tests.counties.mobile.conftest import PHONE_LI, errors, post


@pytest.fixture
def gateway():
    """A stand-in SMS gateway on a free local port; ``status`` is what it answers."""
    received: list[dict] = []
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            received.append(
                {
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": json.loads(self.rfile.read(length).decode("utf-8")),
                }
            )
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_port}/sms", "received": received, "state": state}
    server.shutdown()
    server.server_close()


def test_the_file_backend_appends_one_json_line_per_message_with_the_phone_masked(settings, tmp_path):
    settings.SMS_FILE_PATH = str(tmp_path / "outbox" / "sms.jsonl")

    sms_send(phone=PHONE_LI, text="验证码 123456")
    sms_send(phone="13700000000", text="验证码 654321")

    lines = [json.loads(line) for line in (tmp_path / "outbox" / "sms.jsonl").read_text(encoding="utf-8").splitlines()]
    assert isinstance(sms_backend(), FileSmsBackend)
    assert [(line["to"], line["to_hash"], line["text"]) for line in lines] == [
        ("139****5678", blind_index(PHONE_LI), "验证码 123456"),
        ("137****0000", blind_index("13700000000"), "验证码 654321"),
    ]
    assert PHONE_LI not in (tmp_path / "outbox" / "sms.jsonl").read_text(encoding="utf-8")
    assert [message["text"] for message in sms_outbox(phone=PHONE_LI)] == ["验证码 123456"]


def test_the_console_backend_logs_the_message_with_the_phone_masked(settings, caplog):
    settings.SMS_BACKEND = "platform.sms.ConsoleSmsBackend"

    with caplog.at_level(logging.INFO, logger="platform.sms"):
        sms_send(phone=PHONE_LI, text="验证码 123456")

    assert isinstance(sms_backend(), ConsoleSmsBackend)
    assert [record.getMessage() for record in caplog.records] == ["SMS to 139****5678: 验证码 123456"]


def test_the_gateway_backend_posts_json_with_the_token(settings, gateway):
    settings.SMS_BACKEND = "platform.sms.HttpSmsGatewayBackend"
    settings.SMS_GATEWAY_URL = gateway["url"]
    settings.SMS_GATEWAY_TOKEN = "gateway-token-1"

    sms_send(phone=PHONE_LI, text="验证码 123456")

    (request,) = gateway["received"]
    assert request["path"] == "/sms"
    assert request["headers"]["Authorization"] == "Bearer gateway-token-1"
    assert request["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert request["body"] == {"phone": PHONE_LI, "text": "验证码 123456"}


def test_a_gateway_failure_is_a_delivery_error_and_the_farmer_is_told(settings, gateway, client, li):
    settings.SMS_BACKEND = "platform.sms.HttpSmsGatewayBackend"
    settings.SMS_GATEWAY_URL = gateway["url"]
    settings.SMS_GATEWAY_TOKEN = "gateway-token-1"
    gateway["state"]["status"] = 503

    with pytest.raises(SmsDeliveryError):
        HttpSmsGatewayBackend().send(phone=PHONE_LI, text="x")
    response = post(client, "/m/login/", {"phone": PHONE_LI})

    assert response.status_code == 200
    assert errors(response) == ["短信没有发出去，请稍后再试。"]


def test_the_gateway_backend_needs_its_url_and_token(settings):
    settings.SMS_GATEWAY_URL = ""
    settings.SMS_GATEWAY_TOKEN = ""

    with pytest.raises(ImproperlyConfigured):
        HttpSmsGatewayBackend()
    with pytest.raises(ImproperlyConfigured):
        HttpSmsGatewayBackend(url="ftp://gateway.example/sms", token="t")
