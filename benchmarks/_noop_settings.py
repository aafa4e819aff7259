"""The product's settings plus the throw-away tenant app of benchmarks/_noop_app (for
``migrate_schemas`` in benchmarks/many_counties.py only)."""

import os

from platform.settings import *  # noqa: F403

TENANT_APPS = [*TENANT_APPS, "benchmarks._noop_app"]  # noqa: F405
INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks._noop_app"]  # noqa: F405
TENANT_MULTIPROCESSING_MAX_PROCESSES = int(os.environ.get("TENANT_MULTIPROCESSING_MAX_PROCESSES", "2"))
TENANT_MULTIPROCESSING_CHUNKS = int(os.environ.get("TENANT_MULTIPROCESSING_CHUNKS", "2"))
