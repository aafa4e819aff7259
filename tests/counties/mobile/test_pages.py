"""Every farmer page: under 100 KB with its CSS and JS, assets served by the project itself,
no phone or ID number in any URL, CSRF on every form, secure cookies in production."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

from django.utils import timezone

from loans.nightly import credit_assessment_run
from tests.conftest import make_farmer, valid_id_number
from tests.counties.mobile.conftest import HOST, PHONE_LI, get, last_code, log_in, post
from tests.data_sharing.test_consent import grant
from tests.loans.test_features import CONSENTABLE
from tests.loans.test_nightly_batch import add_wang

REPO_ROOT = Path(__file__).resolve().parents[3]
PAGE_BUDGET = 100 * 1024
ASSET_RE = re.compile(r'<(?:link[^>]+href|script[^>]+src|img[^>]+src)="([^"]+)"')
URL_RE = re.compile(r'(?:href|action|src)="([^"]*)"')


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def weight(client, response) -> tuple[int, list[str]]:
    """Bytes of the page plus every stylesheet, script and image it references."""
    html = response.content.decode()
    assets = ASSET_RE.findall(html)
    total = len(response.content)
    for asset in assets:
        fetched = client.get(asset, HTTP_HOST=HOST)
        assert fetched.status_code == 200, asset
        total += len(body(fetched))
    return total, assets


def test_every_page_is_under_100_kb_with_its_assets_all_served_here(client, county, li):
    consent = grant(li, county["partner"], CONSENTABLE)
    add_wang(li, timezone.localdate())
    credit_assessment_run(business_date=timezone.localdate())
    pages = {"login": get(client, "/m/login/")}
    post(client, "/m/login/", {"phone": "15900002222"})
    pages["code"] = get(client, "/m/login/code/")
    post(client, "/m/login/code/", {"code": last_code("15900002222")})
    pages["identify"] = get(client, "/m/login/identify/")
    log_in(client, li)
    get(client, "/m/data/")  # an access to list
    pages |= {"home": get(client, "/m/"), "consent": get(client, "/m/consent/"), "data": get(client, "/m/data/")}

    weights = {name: weight(client, response) for name, response in pages.items()}

    assert {name: response.status_code for name, response in pages.items()} == dict.fromkeys(pages, 200)
    for name, (total, assets) in weights.items():
        assert total < PAGE_BUDGET, (name, total)
        assert assets == ["/static/mobile/mobile.css", "/static/mobile/mobile.js"], name
        html = pages[name].content.decode()
        assert not re.search(r'(?:href|src|action)="(?:https?:)?//', html), name  # nothing from elsewhere
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
        for form in re.findall(r'<form method="post".*?</form>', html, flags=re.S):
            assert 'name="csrfmiddlewaretoken"' in form, name
    assert consent.pk


def test_no_phone_or_id_number_ever_appears_in_a_url(client, county):
    phone = "13600001234"
    id_number = valid_id_number(seq=631)
    farmer = make_farmer(name="钱七", id_number=id_number)
    urls: list[str] = []

    def seen(response):
        urls.extend(url for url, _status in getattr(response, "redirect_chain", []))
        if response.get("Location"):
            urls.append(response["Location"])
        if response.get("Content-Type", "").startswith("text/html"):
            urls.extend(URL_RE.findall(response.content.decode()))
        return response

    seen(get(client, "/m/login/"))
    seen(post(client, "/m/login/", {"phone": phone}, follow=True))
    seen(post(client, "/m/login/code/", {"code": last_code(phone)}, follow=True))
    seen(post(client, "/m/login/identify/", {"name": "钱七", "id_number": id_number}, follow=True))
    seen(post(client, "/m/consent/grant/", {"categories": ["land_contract"]}, follow=True))
    seen(get(client, "/m/consent/"))
    seen(get(client, "/m/data/"))
    consent = farmer.consents.get()
    seen(post(client, f"/m/consent/{consent.pk}/pause/", follow=True))
    seen(post(client, "/m/logout/", follow=True))

    assert "/m/login/identify/" in urls and "/m/" in urls and "/m/consent/" in urls
    for url in urls:
        assert phone not in url and id_number not in url, url
        assert not re.search(r"\d{7,}", url), url
    assert PHONE_LI not in " ".join(urls)


def test_production_cookies_are_secure_and_codes_go_to_the_gateway():
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DATABASE_URL", "REDIS_URL"}}
    env.update(
        PUHUI_MODE="production",
        SECRET_KEY="x7" * 30 + "-production-like-secret",
        FIELD_ENCRYPTION_KEYS="k1:" + base64.b64encode(b"k" * 32).decode(),
        BLIND_INDEX_KEY=base64.b64encode(b"b" * 32).decode(),
        CONSENT_SIGNING_KEYS="r1:" + base64.b64encode(b"s" * 32).decode(),
        ALLOWED_HOSTS=".puhui.example.cn",
        DATABASE_URL="postgres://puhui@db.internal:5432/puhui",
        REDIS_URL="redis://cache.internal:6379/0",
        DJANGO_SETTINGS_MODULE="platform.settings",
    )
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.SECURE_SSL_REDIRECT, "
        "s.SESSION_COOKIE_AGE, s.SMS_BACKEND)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "True", "1800", "platform.sms.HttpSmsGatewayBackend"]
