"""Production settings pass Django's deployment checklist."""

import base64
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_production_settings_pass_check_deploy():
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DATABASE_URL", "REDIS_URL"}}
    env.update(
        PUHUI_MODE="production",
        SECRET_KEY="x7" * 30 + "-production-like-secret",
        FIELD_ENCRYPTION_KEYS="k1:" + base64.b64encode(b"k" * 32).decode(),
        BLIND_INDEX_KEY=base64.b64encode(b"b" * 32).decode(),
        CONSENT_SIGNING_KEYS="r1:" + base64.b64encode(b"s" * 32).decode(),
        ALLOWED_HOSTS=".puhui.example.cn",
        # check --deploy does not connect; the URLs only have to be well-formed.
        DATABASE_URL="postgres://puhui@db.internal:5432/puhui",
        REDIS_URL="redis://cache.internal:6379/0",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
