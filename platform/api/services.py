"""Integration clients' lifecycle: create, rotate the secret, revoke. Every operator action is
recorded in :class:`~platform.models.OperatorAction`. A secret is returned exactly once (by
create and rotate) and stored only encrypted."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from data_sharing.pii import decrypt, encrypt
from platform.models import County, IntegrationClient, LendingPartner, OperatorAction

KEY_ID_PREFIX = "phk_"


@dataclass(frozen=True)
class ClientSecret:
    """A client and its secret in clear: show it once, never store it."""

    client: IntegrationClient
    secret: str


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def client_secret(client: IntegrationClient) -> str:
    """The secret in clear, for checking a request's signature or signing a webhook."""
    return decrypt(client.secret_encrypted)


def operator_action_record(*, operator: str, action: str, target, detail: dict | None = None) -> OperatorAction:
    return OperatorAction.objects.create(
        operator=operator or "system",
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        target_label=str(target)[:200],
        detail=detail or {},
    )


def _checked_scopes(kind: str, scopes) -> list[str]:
    allowed = (
        IntegrationClient.BANK_SCOPES if kind == IntegrationClient.Kind.BANK else IntegrationClient.DEPARTMENT_SCOPES
    )
    scopes = list(dict.fromkeys(scopes)) if scopes else [str(scope) for scope in allowed]
    wrong = [scope for scope in scopes if scope not in allowed]
    if wrong:
        raise ValidationError(
            _("该类型的系统不能拥有这些权限 / Scopes not allowed for this kind of client: %(scopes)s")
            % {"scopes": ", ".join(wrong)},
            code="scopes",
        )
    return scopes


def client_validate(*, kind: str, partner: LendingPartner | None, scopes, webhook_url: str = "") -> list[str]:
    """The rules of a client's kind; returns the scopes to store (every scope of the kind when
    none are given). Raises ValidationError naming the field."""
    if kind not in IntegrationClient.Kind.values:
        raise ValidationError({"kind": _("未知的系统类型 / Unknown client kind: %(kind)s") % {"kind": kind}})
    if kind == IntegrationClient.Kind.BANK and partner is None:
        raise ValidationError({"partner": _("贷款机构系统必须指定贷款机构 / A bank client needs its lending partner")})
    if kind == IntegrationClient.Kind.DEPARTMENT and webhook_url:
        raise ValidationError({"webhook_url": _("只有贷款机构系统接收事件推送 / Only bank clients receive webhooks")})
    try:
        return _checked_scopes(kind, scopes)
    except ValidationError as error:
        raise ValidationError({"scopes": error.messages}) from None


def client_create(
    *,
    name: str,
    kind: str,
    counties: list[County],
    operator: str,
    partner: LendingPartner | None = None,
    scopes: list[str] | None = None,
    webhook_url: str = "",
    throttle_rate: str = "",
) -> ClientSecret:
    """Register a bank's or a department's system. A bank needs its lending partner; every
    client names the counties it may act for. Scopes default to every scope of its kind."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": _("名称不能为空 / The name is required")})
    scopes = client_validate(kind=kind, partner=partner, scopes=scopes, webhook_url=webhook_url)
    secret = new_secret()
    with transaction.atomic():
        client = IntegrationClient.objects.create(
            name=name,
            kind=kind,
            partner=partner if kind == IntegrationClient.Kind.BANK else None,
            scopes=scopes,
            key_id=KEY_ID_PREFIX + secrets.token_hex(8),
            secret_encrypted=encrypt(secret),
            webhook_url=webhook_url,
            throttle_rate=throttle_rate,
        )
        client.counties.set(counties)
        operator_action_record(
            operator=operator,
            action="client.create",
            target=client,
            detail={"kind": kind, "counties": sorted(c.code for c in counties), "scopes": scopes},
        )
    return ClientSecret(client=client, secret=secret)


def client_rotate(*, client: IntegrationClient, operator: str) -> ClientSecret:
    """A new secret under the same key id; the old secret stops working at once."""
    if not client.is_active:
        raise ValidationError(_("已吊销的系统不能轮换密钥 / A revoked client cannot be rotated"), code="revoked")
    secret = new_secret()
    with transaction.atomic():
        client.secret_encrypted = encrypt(secret)
        client.rotated_at = timezone.now()
        client.save(update_fields=["secret_encrypted", "rotated_at"])
        operator_action_record(operator=operator, action="client.rotate", target=client)
    return ClientSecret(client=client, secret=secret)


def client_revoke(*, client: IntegrationClient, operator: str) -> IntegrationClient:
    """Revoke a client's key at once (every request with it gets 401). Idempotent."""
    if not client.is_active:
        return client
    with transaction.atomic():
        client.is_active = False
        client.revoked_at = timezone.now()
        client.save(update_fields=["is_active", "revoked_at"])
        operator_action_record(operator=operator, action="client.revoke", target=client)
    return client
