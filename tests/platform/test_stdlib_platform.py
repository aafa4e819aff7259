"""``platform/`` is the Django project and also stands in for the standard-library module."""

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, sysconfig, importlib.util
import platform
spec = importlib.util.spec_from_file_location("_real", sysconfig.get_path("stdlib") + "/platform.py")
real = importlib.util.module_from_spec(spec); spec.loader.exec_module(real)
from celery import Celery
app = Celery("probe")
print(json.dumps({
    "file": platform.__file__,
    "system": platform.system(), "real_system": real.system(),
    "machine": platform.machine(), "real_machine": real.machine(),
    "python_version": platform.python_version(),
    "missing": sorted(n for n in dir(real) if not n.startswith("_") and not hasattr(platform, n)),
    "celery_app": app.main,
}))
"""


def test_platform_package_stands_in_for_the_standard_module():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    probe = json.loads(result.stdout)
    assert probe["file"] == str(REPO_ROOT / "platform" / "__init__.py")
    assert probe["system"] == probe["real_system"] == "Linux"
    assert probe["machine"] == probe["real_machine"]
    assert probe["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert probe["missing"] == []
    assert probe["celery_app"] == "probe"


def test_celery_command_line_loads_the_project_app():
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "platform.celery", "inspect", "--help"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "inspect" in result.stdout
