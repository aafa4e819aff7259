"""Locust users for benchmarks/load_portals.py (run by it: ``locust -f benchmarks/_locustfile.py
--headless <UserClass>``). No Django here — the load generator is a separate process that knows
only what a browser or a bank knows: session cookies, the county's host name, a key id and its
secret. The scenario data (sessions, borrowers, the bank's key) come from the JSON file named by
``PUHUI_LOAD_DATA``; every user closes its loop without think time.

* ``HomeUser``: a logged-in farmer opens the home page ``/m/`` (line, reasons, notices).
* ``QuoteUser``: the borrow screen's live preview ``/m/borrow/preview/`` for changing amounts.
* ``DrawdownUser``: a whole drawdown on the farmer portal, each by a farmer not used before:
  POST ``/m/borrow/`` (terms → SMS code) → GET ``/m/borrow/confirm/`` (the demo code and the
  page's idempotency key) → POST ``/m/borrow/confirm/`` (code + key → the loan, schedule,
  ledger and the bank's disbursement instruction). Each request is its own row, plus the
  flow as a whole ("drawdown flow").
* ``LinesUser``: the bank's signed ``GET /api/v1/counties/<code>/lines`` following
  ``next_cursor`` page after page, back to the start when ``has_more`` is false.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import random
import re
import secrets
import time
from urllib.parse import urlencode

from locust import FastHttpUser, task
from locust.exception import StopUser

DATA = json.loads(open(os.environ["PUHUI_LOAD_DATA"]).read()) if os.environ.get("PUHUI_LOAD_DATA") else {}
_farmers = itertools.cycle(DATA.get("farmers") or [None])
_borrowers = iter(DATA.get("borrowers") or [])
_counties = itertools.cycle((DATA.get("bank") or {}).get("counties") or [None])
DEMO_CODE = re.compile(r'id="demo-code">(\d+)<')
KEY_FIELD = re.compile(r'name="key" value="([^"]+)"')


def farmer_headers(farmer: dict) -> dict[str, str]:
    return {"Host": farmer["host"], "Cookie": f"sessionid={farmer['session']}; csrftoken={farmer['csrf']}"}


def check(response, status: int, contains: str | None = None) -> bool:
    if response.status_code != status:
        response.failure(f"status {response.status_code}, expected {status}")
        return False
    if contains is not None and contains not in (response.text or ""):
        response.failure(f"{contains!r} missing from the page")
        return False
    response.success()
    return True


class HomeUser(FastHttpUser):
    def on_start(self) -> None:
        self.farmer = next(_farmers)

    @task
    def home(self) -> None:
        with self.client.get("/m/", headers=farmer_headers(self.farmer), name="farmer home /m/",
                             catch_response=True, allow_redirects=False) as response:
            check(response, 200, 'class="tabs')


class QuoteUser(FastHttpUser):
    def on_start(self) -> None:
        self.farmer = next(_farmers)
        self.rng = random.Random()

    @task
    def quote(self) -> None:
        farmer = self.farmer
        query = urlencode({
            "amount": self.rng.randrange(1000, max(1001, min(int(float(farmer["available"])), 50000)) + 1, 100),
            "term_months": self.rng.choice(farmer["terms"]),
            "method": self.rng.choice(farmer["methods"]),
        })
        with self.client.get(f"/m/borrow/preview/?{query}", headers=farmer_headers(farmer),
                             name="borrow quote /m/borrow/preview/", catch_response=True,
                             allow_redirects=False) as response:
            check(response, 200, 'id="plan"')


class DrawdownUser(FastHttpUser):
    @task
    def drawdown(self) -> None:
        farmer = next(_borrowers, None)
        if farmer is None:
            raise StopUser()  # every prepared borrower has drawn once: the pool is sized for the run
        headers = farmer_headers(farmer)
        form_headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        started = time.perf_counter()
        body = urlencode({"amount": "1000", "term_months": farmer["term"], "method": farmer["method"],
                          "csrfmiddlewaretoken": farmer["csrf"]})
        with self.client.post("/m/borrow/", data=body, headers=form_headers, name="drawdown 1: terms + code",
                              catch_response=True, allow_redirects=False) as response:
            if response.status_code == 200:  # the form again, with the refusal
                refusal = re.search(r'class="errorlist[^>]*>\s*<li>([^<]*)', response.text or "")
                response.failure(f"refused: {refusal.group(1) if refusal else '?'}")
                return
            if not check(response, 302):
                return
        with self.client.get("/m/borrow/confirm/", headers=headers, name="drawdown 2: confirm page",
                             catch_response=True, allow_redirects=False) as response:
            if not check(response, 200, 'id="demo-code"'):
                return
            code, key = DEMO_CODE.search(response.text), KEY_FIELD.search(response.text)
        body = urlencode({"code": code.group(1), "key": key.group(1), "csrfmiddlewaretoken": farmer["csrf"]})
        with self.client.post("/m/borrow/confirm/", data=body, headers=form_headers, name="drawdown 3: confirm",
                              catch_response=True, allow_redirects=False) as response:
            if response.status_code != 302 or "/m/borrow/done/" not in response.headers.get("Location", ""):
                response.failure(f"status {response.status_code} to {response.headers.get('Location')}: no loan")
                return
            response.success()
        self.environment.events.request.fire(
            request_type="FLOW", name="drawdown flow", response_time=(time.perf_counter() - started) * 1000,
            response_length=0, exception=None, context={},
        )


class LinesUser(FastHttpUser):
    """A bank's line synchronisation: signed requests (the algorithm of platform/api/auth.py, as
    a bank implements it: HMAC-SHA256 of METHOD, PATH, QUERY, TIMESTAMP, NONCE, SHA-256(body))."""

    page_size = 100

    def on_start(self) -> None:
        self.county = next(_counties)
        self.cursor = ""

    def signed(self, method: str, path: str, query: str) -> dict[str, str]:
        bank = DATA["bank"]
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        message = "\n".join([method, path, query, timestamp, nonce, hashlib.sha256(b"").hexdigest()])
        signature = hmac.new(bank["secret"].encode(), message.encode(), hashlib.sha256).hexdigest()
        return {"Host": "localhost", "X-Puhui-Key": bank["key_id"], "X-Puhui-Timestamp": timestamp,
                "X-Puhui-Nonce": nonce, "X-Puhui-Signature": signature}

    @task
    def lines(self) -> None:
        path = f"/api/v1/counties/{self.county}/lines"
        query = urlencode({"page_size": self.page_size, **({"cursor": self.cursor} if self.cursor else {})})
        with self.client.get(f"{path}?{query}", headers=self.signed("GET", path, query), name="bank lines sync",
                             catch_response=True, allow_redirects=False) as response:
            if not check(response, 200):
                return
            page = response.json()
            self.cursor = page["next_cursor"] if page.get("has_more") else ""
