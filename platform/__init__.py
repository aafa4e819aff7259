"""Puhui's Django project package, standing in for the standard-library ``platform`` module.

The design card names this package ``platform``, which shadows the standard-library module of
the same name whenever the repository root is on ``sys.path`` (``manage.py``, ``python -m``).
Celery, kombu, psutil and Django itself call ``platform.system()`` and friends, so a plain
package here breaks ``from celery import Celery``. We therefore load the real ``platform.py``
from the interpreter's standard library and re-export its names, so this package is both the
Django project and a faithful ``platform`` module.
"""

import importlib.util as _importlib_util
import sys as _sys
import sysconfig as _sysconfig

_spec = _importlib_util.spec_from_file_location(
    "_stdlib_platform", _sysconfig.get_path("stdlib") + "/platform.py"
)
_stdlib_platform = _importlib_util.module_from_spec(_spec)
_sys.modules["_stdlib_platform"] = _stdlib_platform
_spec.loader.exec_module(_stdlib_platform)

# Public names plus the private helpers some libraries reach for (e.g. ``_syscmd_ver``);
# dunders stay ours so this remains a package.
globals().update(
    {name: value for name, value in vars(_stdlib_platform).items() if not name.startswith("__")}
)
__all__ = [name for name in vars(_stdlib_platform) if not name.startswith("_")]
