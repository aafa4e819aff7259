"""Consent on /m/consent/: what the screen offers (who receives which data and why, sensitive
information as a separate choice), granting in one POST, pausing, resuming and revoking, re-consent
after a new text, the signed receipt — and nobody reaching another farmer's consent."""

from __future__ import annotations

import json

import pytest

from data_sharing.models import Consent, ConsentEvent
from data_sharing.receipts import receipt_verify
from data_sharing.services import consent_text_publish
from loans.models import CreditLine
from loans.nightly import credit_assessment_run
from tests.counties.mobile.conftest import ID_LI, errors, get, log_in, post
from tests.data_sharing.test_consent import grant
from tests.loans.test_features import CONSENTABLE

GENERAL = [
    "land_contract",
    "land_transfer",
    "agri_subsidy",
    "agri_insurance",
    "social_insurance",
    "business_entity",
    "coop_membership",
]


def test_the_screen_says_who_receives_what_and_why(client, county, li):
    log_in(client, li)

    html = get(client, "/m/consent/").content.decode()

    assert "<h2>授权给mybank 银行</h2>" in html
    assert "<p><strong>谁会收到：</strong>mybank 银行</p>" in html
    assert "本人同意兰考县将下列政务数据共享给贷款机构" in html and "{county}" not in html
    for code in GENERAL:
        assert f'<input type="checkbox" name="categories" value="{code}" checked>' in html
    assert (
        '<label class="check"><input type="checkbox" name="categories" value="land_contract" checked>\n'
        "        <span><strong>土地承包经营权</strong><small>您承包的土地面积，用来估算您的种植收入和可贷额度。</small></span></label>"
    ) in html
    # Sensitive personal information: a separate, unticked choice (PIPL separate consent).
    assert "<legend>敏感个人信息（需要您单独同意）</legend>" in html
    assert '<input type="checkbox" name="sensitive_categories" value="poverty_monitoring">' in html
    assert "我单独同意共享：脱贫户与防返贫监测" in html
    # The court's public list needs no consent and is not offered.
    assert "dishonest_debtor" not in html


def test_granting_in_one_post_with_the_separate_sensitive_choice(client, county, li):
    log_in(client, li)

    response = post(
        client, "/m/consent/grant/", {"categories": GENERAL, "sensitive_categories": ["poverty_monitoring"]}
    )

    consent = Consent.objects.get(farmer=li)
    assert (response.status_code, response["Location"]) == (302, "/m/")
    assert consent.categories == sorted(CONSENTABLE)
    assert (consent.status, consent.channel, consent.partner, consent.text.version) == (
        "active",
        "self",
        county["partner"],
        1,
    )
    assert ConsentEvent.objects.filter(consent=consent).values_list("event", "actor", "channel").get() == (
        "granted",
        f"farmer:{li.pk}",
        "self",
    )


def test_sensitive_data_is_left_out_unless_separately_ticked(client, county, li):
    log_in(client, li)

    post(client, "/m/consent/grant/", {"categories": GENERAL})

    assert Consent.objects.get(farmer=li).categories == sorted(GENERAL)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "请至少选择一类数据。"),
        ({"categories": ["dishonest_debtor"]}, "选择一个有效的选项。 dishonest_debtor 不在可用的选项中。"),
        ({"categories": ["poverty_monitoring"]}, "选择一个有效的选项。 poverty_monitoring 不在可用的选项中。"),
    ],
)
def test_a_grant_outside_the_screen_is_refused(client, county, li, data, message):
    log_in(client, li)

    response = post(client, "/m/consent/grant/", data, follow=True)

    assert response.redirect_chain == [("/m/consent/", 302)]
    assert errors(response) == [message]
    assert not Consent.objects.filter(farmer=li).exists()


def test_pause_resume_and_revoke_are_one_post_each(client, county, li):
    consent = grant(li, county["partner"], CONSENTABLE)
    credit_assessment_run(business_date=consent.starts_at.date())
    log_in(client, li)
    page = get(client, "/m/consent/").content.decode()

    paused = post(client, f"/m/consent/{consent.pk}/pause/", follow=True)
    line_when_paused = CreditLine.objects.get(farmer=li).status
    resumed = post(client, f"/m/consent/{consent.pk}/resume/", follow=True)
    line_when_resumed = CreditLine.objects.get(farmer=li).status
    revoked = post(client, f"/m/consent/{consent.pk}/revoke/", follow=True)

    consent.refresh_from_db()
    # Each is a tap that opens the confirmation, then the confirming button.
    assert '<summary class="btn secondary">暂停授权</summary>' in page
    assert f'<form method="post" action="/m/consent/{consent.pk}/pause/">' in page
    assert '<summary class="btn danger-outline">撤回授权</summary>' in page
    assert f'<form method="post" action="/m/consent/{consent.pk}/revoke/">' in page
    assert errors(paused) == ["已暂停授权。您的数据不再共享，额度暂时不能用。"]
    assert errors(resumed) == ["已恢复授权。"]
    assert errors(revoked) == ["已撤回授权。您的数据不再共享，额度已冻结。"]
    assert (line_when_paused, line_when_resumed) == ("suspended", "active")
    assert consent.status == "revoked"
    assert CreditLine.objects.get(farmer=li).status == "suspended"
    assert list(ConsentEvent.objects.filter(consent=consent).values_list("event", "actor")) == [
        ("granted", f"farmer:{li.pk}"),
        ("paused", f"farmer:{li.pk}"),
        ("resumed", f"farmer:{li.pk}"),
        ("revoked", f"farmer:{li.pk}"),
    ]
    # After revoking, the screen offers a new grant.
    assert 'id="grant"' in get(client, "/m/consent/").content.decode()


def test_a_move_the_lifecycle_refuses_is_explained(client, county, li):
    consent = grant(li, county["partner"], CONSENTABLE)
    log_in(client, li)

    response = post(client, f"/m/consent/{consent.pk}/resume/", follow=True)

    assert errors(response) == ["只有已暂停的授权可以恢复；已撤回或已过期的授权请重新授权"]


def test_a_changed_text_asks_for_re_consent_and_the_new_grant_supersedes(client, county, li):
    old = grant(li, county["partner"], ["land_contract"])
    consent_text_publish(purpose_code="credit", text_zh="{county}新版授权书", text_en="New text for {county}")
    log_in(client, li)

    page = get(client, "/m/consent/").content.decode()
    response = post(client, "/m/consent/grant/", {"categories": ["land_contract", "agri_subsidy"]})

    old.refresh_from_db()
    new = Consent.objects.get(farmer=li, status="active")
    assert "授权书有更新或已到期，请阅读下面的内容，重新授权。" in page
    assert '<div class="text" id="consent-text">兰考县新版授权书</div>' in page
    assert "同意并重新授权" in page
    assert response["Location"] == "/m/"
    assert (old.status, new.text.version, new.categories) == ("revoked", 2, ["agri_subsidy", "land_contract"])
    assert ConsentEvent.objects.filter(consent=old).latest("id").event == "superseded"


def test_the_signed_receipt_downloads_and_verifies(client, county, li):
    consent = grant(li, county["partner"], CONSENTABLE)
    log_in(client, li)

    response = get(client, f"/m/consent/{consent.pk}/receipt/")

    document = json.loads(response.content.decode("utf-8"))
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="consent-receipt-{consent.receipt["receipt_id"]}.json"'
    )
    assert document == {"receipt": consent.receipt, "signature": consent.receipt_signature}
    assert receipt_verify(document["receipt"], document["signature"])
    assert document["receipt"]["farmer_id_masked"] == ID_LI[:4] + "*" * 10 + ID_LI[-4:]


def test_another_farmers_consent_and_receipt_are_not_found(client, county, li, wang):
    theirs = grant(wang, county["partner"], CONSENTABLE)
    log_in(client, li)

    answers = [
        get(client, f"/m/consent/{theirs.pk}/receipt/").status_code,
        post(client, f"/m/consent/{theirs.pk}/pause/").status_code,
        post(client, f"/m/consent/{theirs.pk}/resume/").status_code,
        post(client, f"/m/consent/{theirs.pk}/revoke/").status_code,
        get(client, "/m/consent/999999/receipt/").status_code,
    ]

    theirs.refresh_from_db()
    assert answers == [404, 404, 404, 404, 404]
    assert theirs.status == "active"
    assert "consent-receipt" not in get(client, "/m/consent/").content.decode()


def test_state_changes_are_post_only(client, county, li):
    consent = grant(li, county["partner"], CONSENTABLE)
    log_in(client, li)

    answers = [
        get(client, f"/m/consent/{consent.pk}/{action}/").status_code for action in ("pause", "resume", "revoke")
    ]

    assert answers == [405, 405, 405]
    assert get(client, "/m/consent/grant/").status_code == 405
    assert get(client, "/m/logout/").status_code == 405
