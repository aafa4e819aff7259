"""Train a county's scorecard on its labelled history and report its validation:

    manage.py train_scorecard --county 410225 [--date YYYY-MM-DD] [--seed N] [--partner CODE] [--activate]

The new version is stored inactive unless ``--activate``. The lending partner (whose consents
admit the data) defaults to the active credit policy's.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django_tenants.utils import schema_context

from loans.policy import policy_active
from loans.scorecard import FEATURE_BY_NAME
from loans.scorecards import iv_strength, scorecard_activate, scorecard_train_for_county
from platform.commands import county_or_error, date_or_error
from platform.models import LendingPartner

ACTOR = "manage.py train_scorecard"


class Command(BaseCommand):
    help = (
        "Train a county's scorecard (WoE binning + logistic regression) on its consented, labelled history; "
        "report Gini, KS and each feature's information value on a holdout."
    )

    def add_arguments(self, parser):
        parser.add_argument("--county", required=True, help="county code, e.g. 410225")
        parser.add_argument("--date", help="business date, YYYY-MM-DD (default: today)")
        parser.add_argument("--seed", type=int, default=0, help="seed of the train/holdout split (default 0)")
        parser.add_argument("--partner", help="lending partner code (default: the active credit policy's)")
        parser.add_argument("--activate", action="store_true", help="score with the new scorecard from the next run")

    def handle(self, *args, **options):
        county = county_or_error(options["county"])
        business_date = date_or_error(options["date"], default=timezone.localdate())

        with schema_context(county.schema_name):
            partner = self._partner(options["partner"])
            try:
                scorecard = scorecard_train_for_county(
                    partner=partner, business_date=business_date, seed=options["seed"]
                )
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from None
            if options["activate"]:
                scorecard_activate(scorecard=scorecard, actor=ACTOR)

        metrics = scorecard.metrics
        state = "active 已启用" if scorecard.is_active else "not active 未启用 (--activate to use it)"
        self.stdout.write(
            f"{county.name} {county.code}: scorecard v{scorecard.version} — {state}\n"
            f"  business date {metrics['business_date']}, labels from loans started after "
            f"{metrics['observation_point']}, partner {metrics['partner']}, seed {metrics['seed']}\n"
            f"  sample          {metrics['sample_size']:>8,} farmers, {metrics['bads']:,} bads"
            f" (bad rate {metrics['bad_rate']:.2%})\n"
            f"  train / holdout {metrics['train_size']:>8,} / {metrics['holdout_size']:,}\n"
            f"  holdout         Gini {metrics['gini']:.4f}   KS {metrics['ks']:.4f}\n"
        )
        self.stdout.write(f"  {'feature':<24} {'IV':>8}  strength")
        for name, iv in metrics["iv"].items():
            label_zh, label_en = iv_strength(iv)
            self.stdout.write(f"  {name:<24} {iv:>8.4f}  {label_en} {label_zh}  ({FEATURE_BY_NAME[name].label_zh})")

    @staticmethod
    def _partner(partner_code: str | None) -> LendingPartner:
        if partner_code:
            partner = LendingPartner.objects.filter(code=partner_code).first()
            if partner is None:
                raise CommandError(
                    f"没有代码为 {partner_code} 的贷款机构 / no lending partner with code {partner_code}"
                )
            return partner
        policy = policy_active()
        if policy is None:
            raise CommandError(
                "该县没有生效的授信政策，请用 --partner 指定贷款机构"
                " / The county has no active credit policy: name the lending partner with --partner"
            )
        return policy.partner
