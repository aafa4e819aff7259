"""Sending text messages (the farmer portal's login codes), through a pluggable backend.

``settings.SMS_BACKEND`` names the backend class (dotted path):

* :class:`FileSmsBackend` — the local default: appends one JSON line per message to
  ``settings.SMS_FILE_PATH`` (under ``.data/``), where ``make demo`` users and the browser tests
  read the codes. The phone is written masked, with its blind index for look-up.
* :class:`ConsoleSmsBackend` — logs the message (phone masked).
* :class:`HttpSmsGatewayBackend` — production: POSTs JSON ``{"phone", "text"}`` to
  ``settings.SMS_GATEWAY_URL`` with ``Authorization: Bearer <SMS_GATEWAY_TOKEN>``.

A backend that cannot deliver raises :class:`SmsDeliveryError`; callers tell the user to try
again later. Phone numbers never reach a log line unmasked.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

from data_sharing.pii import blind_index, mask_phone

logger = logging.getLogger(__name__)


class SmsDeliveryError(RuntimeError):
    """The message could not be handed to the SMS service."""


class SmsBackend:
    def send(self, *, phone: str, text: str) -> None:
        raise NotImplementedError


class ConsoleSmsBackend(SmsBackend):
    """Development: the message goes to the log (never use it where logs are shipped)."""

    def send(self, *, phone: str, text: str) -> None:
        logger.info("SMS to %s: %s", mask_phone(phone), text)


class FileSmsBackend(SmsBackend):
    """Local/demo: one JSON line per message appended to ``settings.SMS_FILE_PATH``:
    ``{"at", "to" (masked), "to_hash" (blind index), "text"}``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path or settings.SMS_FILE_PATH)

    def send(self, *, phone: str, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = {"at": timezone.now().isoformat(), "to": mask_phone(phone), "to_hash": blind_index(phone), "text": text}
        with self.path.open("a", encoding="utf-8") as outbox:
            outbox.write(json.dumps(line, ensure_ascii=False) + "\n")
        logger.info("SMS to %s written to %s", mask_phone(phone), self.path)


class HttpSmsGatewayBackend(SmsBackend):
    """Production: the operator's SMS gateway, ``POST {"phone", "text"}`` as JSON with a bearer
    token; any answer but 2xx (or no answer within ``SMS_GATEWAY_TIMEOUT`` seconds) fails."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float | None = None) -> None:
        self.url = url if url is not None else settings.SMS_GATEWAY_URL
        self.token = token if token is not None else settings.SMS_GATEWAY_TOKEN
        self.timeout = timeout if timeout is not None else settings.SMS_GATEWAY_TIMEOUT
        if not self.url.startswith(("https://", "http://")) or not self.token:
            raise ImproperlyConfigured(
                "HttpSmsGatewayBackend needs SMS_GATEWAY_URL (http[s]://…) and SMS_GATEWAY_TOKEN"
            )

    def send(self, *, phone: str, text: str) -> None:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url,
            data=json.dumps({"phone": phone, "text": text}, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8", "Authorization": f"Bearer {self.token}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status = response.status
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            logger.warning("SMS gateway refused or unreachable for %s: %s", mask_phone(phone), error)
            raise SmsDeliveryError(str(error)) from error
        if not 200 <= status < 300:
            logger.warning("SMS gateway answered %s for %s", status, mask_phone(phone))
            raise SmsDeliveryError(f"gateway answered {status}")
        logger.info("SMS to %s handed to the gateway", mask_phone(phone))


def sms_backend() -> SmsBackend:
    return import_string(settings.SMS_BACKEND)()


def sms_send(*, phone: str, text: str) -> None:
    """Send ``text`` to ``phone`` (11 digits) through the configured backend."""
    sms_backend().send(phone=phone, text=text)


def sms_outbox(*, phone: str, since: dt.datetime | None = None, path: str | Path | None = None) -> list[dict]:
    """The messages :class:`FileSmsBackend` wrote for ``phone`` (oldest first): what a demo user
    or a browser test reads instead of a handset."""
    outbox = Path(path or settings.SMS_FILE_PATH)
    if not outbox.exists():
        return []
    wanted = blind_index(phone)
    messages = []
    for line in outbox.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        if message.get("to_hash") == wanted and (since is None or dt.datetime.fromisoformat(message["at"]) >= since):
            messages.append(message)
    return messages
