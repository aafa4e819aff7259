"""Every operator action in the console lands in the append-only OperatorAction trail — actor,
action, object and what changed — and the trail is readable, never editable, in the console."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice

from platform.models import County, Domain, IntegrationClient, LendingPartner, OperatorAction
from tests.conftest import in_county
from tests.loans.test_features import credit_partner
from tests.platform.test_api_auth import make_bank


def trail(**filters) -> list[tuple]:
    """(operator, action, object type, object id, label, detail), oldest first."""
    rows = OperatorAction.objects.filter(**filters).order_by("id")
    return [(a.operator, a.action, a.target_type, a.target_id, a.target_label, a.detail) for a in rows]


def test_suspending_and_resuming_a_county_are_recorded(admin_client, lankao):
    for action in ("suspend", "resume"):
        admin_client.post("/admin/platform/county/", {"action": action, "_selected_action": [lankao.pk]})

    assert trail(target_type="platform.county") == [
        (
            "admin",
            "county.suspend",
            "platform.county",
            str(lankao.pk),
            "兰考县 (410225)",
            {"changes": {"status": ["live", "suspended"]}},
        ),
        (
            "admin",
            "county.resume",
            "platform.county",
            str(lankao.pk),
            "兰考县 (410225)",
            {"changes": {"status": ["suspended", "live"]}},
        ),
    ]


def _county_form(county: County, domains: list[dict], **fields) -> dict:
    """The county change form as the browser posts it, with the domain inline rows."""
    data = {"name": county.name, "province": county.province, "city": county.city, **fields}
    existing = [d for d in domains if "id" in d]
    data |= {
        "domains-TOTAL_FORMS": str(len(domains)),
        "domains-INITIAL_FORMS": str(len(existing)),
        "domains-MIN_NUM_FORMS": "0",
        "domains-MAX_NUM_FORMS": "1000",
    }
    for index, domain in enumerate(domains):
        data |= {f"domains-{index}-{key}": value for key, value in domain.items()}
        data[f"domains-{index}-tenant"] = str(county.pk)
    return data


def test_editing_a_county_and_its_domains_is_recorded_with_the_changes(admin_client, lankao):
    primary = lankao.domains.get()
    url = f"/admin/platform/county/{lankao.pk}/change/"
    keep = {"id": str(primary.pk), "domain": primary.domain, "is_primary": "on"}

    added = admin_client.post(url, _county_form(lankao, [keep, {"domain": "lk.localhost"}], city="开封"))
    second = Domain.objects.get(domain="lk.localhost")
    renamed = admin_client.post(
        url, _county_form(lankao, [keep, {"id": str(second.pk), "domain": "lankao2.localhost"}], city="开封")
    )
    removed = admin_client.post(
        url,
        _county_form(
            lankao, [keep, {"id": str(second.pk), "domain": "lankao2.localhost", "DELETE": "on"}], city="开封"
        ),
    )

    assert [r.status_code for r in (added, renamed, removed)] == [302, 302, 302]
    assert not Domain.objects.filter(pk=second.pk).exists()
    domain_values = {"id": second.pk, "domain": "lk.localhost", "tenant": lankao.pk, "is_primary": False}
    # The county's own fields changed once (the first save); its inline domains on each save.
    assert [(op, action, label, detail) for op, action, _t, _i, label, detail in trail()] == [
        ("admin", "domain.create", "lk.localhost", {"values": domain_values}),
        ("admin", "county.update", "兰考县 (410225)", {"changes": {"city": ["开封市", "开封"]}}),
        ("admin", "domain.update", "lankao2.localhost", {"changes": {"domain": ["lk.localhost", "lankao2.localhost"]}}),
        ("admin", "domain.delete", "lankao2.localhost", {"values": {**domain_values, "domain": "lankao2.localhost"}}),
    ]


def test_partner_changes_are_recorded_and_a_partner_in_use_is_not_deleted(admin_client, lankao):
    admin_client.post(
        "/admin/platform/lendingpartner/add/", {"code": "test-bank", "name": "测试银行", "is_active": "on"}
    )
    partner = LendingPartner.objects.get(code="test-bank")
    admin_client.post(f"/admin/platform/lendingpartner/{partner.pk}/change/", {"name": "测试农商银行"})
    deleted = admin_client.post(f"/admin/platform/lendingpartner/{partner.pk}/delete/", {"post": "yes"})

    assert deleted.status_code == 302 and not LendingPartner.objects.filter(pk=partner.pk).exists()
    values = {"id": partner.pk, "code": "test-bank", "name": "测试农商银行", "is_active": False}
    trail_rows = trail(target_type="platform.lendingpartner")
    assert [(op, action, detail) for op, action, _t, _i, _l, detail in trail_rows] == [
        ("admin", "partner.create", {"values": {"code": "test-bank", "name": "测试银行", "is_active": True}}),
        ("admin", "partner.update", {"changes": {"name": ["测试银行", "测试农商银行"], "is_active": [True, False]}}),
        ("admin", "partner.delete", {"values": {**values, "created_at": trail_rows[2][5]["values"]["created_at"]}}),
    ]

    with in_county(lankao):
        used = credit_partner("used-bank")  # a data-sharing agreement in Lankao's schema names it
    make_bank(used, [lankao], name="在用银行核心")
    page = admin_client.get(f"/admin/platform/lendingpartner/{used.pk}/delete/").content.decode()
    refused = admin_client.post(f"/admin/platform/lendingpartner/{used.pk}/delete/", {"post": "yes"})
    assert "在用银行核心" in page and "兰考县: data_sharing_datasharingagreement" in page
    assert refused.status_code == 200  # the page listing what still names it, again
    assert LendingPartner.objects.filter(pk=used.pk).exists()
    assert not OperatorAction.objects.filter(action="partner.delete", target_id=str(used.pk)).exists()


def test_client_lifecycle_and_dead_letter_replay_are_recorded(admin_client, lankao):
    partner = LendingPartner.objects.create(code="trail-bank", name="审计银行")
    admin_client.post(
        "/admin/platform/integrationclient/add/",
        {
            "name": "审计银行核心",
            "kind": "bank",
            "partner": partner.pk,
            "counties": [lankao.pk],
            "scopes": ["lines:read"],
        },
    )
    client = IntegrationClient.objects.get(name="审计银行核心")
    for action in ("rotate", "revoke"):
        admin_client.post("/admin/platform/integrationclient/", {"action": action, "_selected_action": [client.pk]})
    admin_client.post("/admin/platform/integrationclient/dead-letters/", {"message": ["410225:987654"]})

    label = f"审计银行核心 ({client.key_id})"
    assert [
        (op, action, label_) for op, action, _t, _i, label_, _d in trail(target_type="platform.integrationclient")
    ] == [
        ("admin", "client.create", label),
        ("admin", "client.rotate", label),
        ("admin", "client.revoke", label),
    ]
    assert trail(action="outbox.replay") == [
        (
            "admin",
            "outbox.replay",
            "platform.county",
            str(lankao.pk),
            "兰考县 (410225)",
            {"message_ids": [987654], "replayed": 0},
        ),
    ]


def test_other_apps_admins_are_audited_too_without_their_secrets(admin_client):
    """An operator resets a colleague's second factor and password: recorded, the secrets not."""
    colleague = get_user_model().objects.create_user("colleague", password="colleague-pass-1", is_staff=True)
    device = TOTPDevice.objects.create(user=colleague, name="console", confirmed=True)

    admin_client.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    admin_client.post(
        f"/admin/auth/user/{colleague.pk}/password/",
        {"password1": "a-new-long-pass-7", "password2": "a-new-long-pass-7", "usable_password": "true"},
    )

    reset, password = trail(action__in=["otp_totp.totpdevice.delete", "auth.user.update"])
    assert (reset[0], reset[1], reset[3]) == ("admin", "otp_totp.totpdevice.delete", str(device.pk))
    assert reset[5]["values"]["name"] == "console" and "key" not in reset[5]["values"]
    assert (password[0], password[1], password[4]) == ("admin", "auth.user.update", "colleague")
    assert "a-new-long-pass-7" not in str(password[5]) and "pbkdf2" not in str(password[5])


@pytest.mark.parametrize("method", ["add", "change", "delete"])
def test_the_trail_is_visible_and_read_only_in_the_console(admin_client, lankao, method):
    admin_client.post("/admin/platform/county/", {"action": "suspend", "_selected_action": [lankao.pk]})
    action = OperatorAction.objects.get(action="county.suspend")

    listing = admin_client.get("/admin/platform/operatoraction/").content.decode()
    assert "暂停县 (county.suspend)" in listing and "兰考县 (410225)" in listing
    if method == "add":
        assert admin_client.get("/admin/platform/operatoraction/add/").status_code == 403
    elif method == "change":
        page = admin_client.get(f"/admin/platform/operatoraction/{action.pk}/change/")
        assert page.status_code == 200
        assert 'name="_save"' not in page.content.decode()
        admin_client.post(f"/admin/platform/operatoraction/{action.pk}/change/", {"operator": "someone else"})
    else:
        assert (
            admin_client.post(f"/admin/platform/operatoraction/{action.pk}/delete/", {"post": "yes"}).status_code == 403
        )
    action.refresh_from_db()
    assert action.operator == "admin"
