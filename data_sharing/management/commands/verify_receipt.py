"""Check a downloaded consent receipt: ``manage.py verify_receipt receipt.json [--public-key B64]``.

The file is what the farmer downloads: ``{"receipt": {...}, "signature": "..."}``. Without
``--public-key`` the key is the configured signing key the receipt's ``key_id`` names.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from data_sharing.receipts import receipt_verify


class Command(BaseCommand):
    help = "Verify a signed consent receipt (JSON file with 'receipt' and 'signature')."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--public-key", default=None, help="base64 raw Ed25519 public key")

    def handle(self, *args, path: str, public_key: str | None, **options):
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot read {path}: {error}") from None
        receipt, signature = document.get("receipt"), document.get("signature")
        if not receipt_verify(receipt, signature, public_key=public_key):
            raise CommandError(f"INVALID receipt {path}")
        self.stdout.write(f"valid: receipt {receipt['receipt_id']} consent {receipt['consent_id']} key {receipt['key_id']}")
