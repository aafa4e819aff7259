"""Writes to the county registry. Everything that creates or changes a county goes through here
(the ``onboard_county`` command and the admin console alike)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_domain_name
from django.db import transaction
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from counties.models import Official
from platform.middleware import forget_county_hosts
from platform.models import County, Domain, schema_name_for, validate_county_code


@dataclass(frozen=True)
class OnboardedCounty:
    county: County
    admin_username: str
    # Only set when the password was generated here: show it once, never store it.
    generated_password: str | None


def county_onboard(
    *,
    code: str,
    name: str,
    domain: str,
    province: str = "",
    city: str = "",
    admin_username: str = "admin",
    admin_password: str | None = None,
    go_live: bool = True,
) -> OnboardedCounty:
    """Create a county: its registry row, its schema (all county migrations), its primary
    domain and a first county administrator. Refuses a duplicate code or domain before
    touching anything; if building the schema fails, nothing is left behind."""
    code = (code or "").strip()
    name = (name or "").strip()
    domain = (domain or "").strip().lower()
    validate_county_code(code)
    if not name:
        raise ValidationError(_("县名称不能为空 / The county name is required"), code="name")
    try:
        validate_domain_name(domain)
    except ValidationError:
        raise ValidationError(_("域名无效：%(domain)s / Invalid domain: %(domain)s") % {"domain": domain}, code="domain") from None
    existing = County.objects.filter(code=code).first()
    if existing:
        raise ValidationError(
            _("行政区划代码 %(code)s 已接入（%(name)s），不能重复接入 / County %(code)s is already onboarded (%(name)s)")
            % {"code": code, "name": existing.name},
            code="duplicate",
        )
    if Domain.objects.filter(domain=domain).exists():
        raise ValidationError(_("域名 %(domain)s 已被使用 / Domain %(domain)s is already in use") % {"domain": domain}, code="duplicate_domain")

    generated = None
    if not admin_password:
        admin_password = settings.COUNTY_ADMIN_PASSWORD or None
    if not admin_password:
        admin_password = generated = secrets.token_urlsafe(12)

    county = County.objects.create(
        schema_name=schema_name_for(code), code=code, name=name, province=province, city=city,
        status=County.Status.ONBOARDING,
    )
    try:
        county.create_schema(check_if_exists=True, verbosity=0)
        with transaction.atomic():
            Domain.objects.create(domain=domain, tenant=county, is_primary=True)
            with schema_context(county.schema_name):
                user = get_user_model().objects.create_user(username=admin_username, password=admin_password)
                Official.objects.create(user=user, role=Official.Role.COUNTY_ADMIN)
            if go_live:
                county.status = County.Status.LIVE
                county.save(update_fields=["status", "status_changed_at"])
    except BaseException:
        # Compensate: a half-onboarded county (schema without admin, row without domain) would
        # block the retry with a "duplicate" it never finished.
        Domain.objects.filter(tenant=county).delete()
        county.delete(force_drop=True)
        raise
    forget_county_hosts([domain])
    return OnboardedCounty(county=county, admin_username=admin_username, generated_password=generated)


def county_set_status(*, county: County, status: str) -> County:
    """Suspend or resume a county; its domains answer 403 while suspended, at once."""
    if status not in County.Status.values:
        raise ValidationError(_("未知状态 / Unknown status: %(status)s") % {"status": status}, code="status")
    county.status = status
    county.save(update_fields=["status", "status_changed_at"])
    forget_county_hosts(list(county.domains.values_list("domain", flat=True)))
    return county
