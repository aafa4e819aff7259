#!/usr/bin/env bash
# `make test`: lint, then the whole suite against real PostgreSQL and Redis — the configured
# ones when DATABASE_URL / REDIS_URL are set, else the embedded ones (started here if needed and
# stopped again afterwards if this script started them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

$PY -m ruff check .

started_here=0
if [[ -z "${DATABASE_URL:-}" || -z "${REDIS_URL:-}" ]]; then
  if $PY -m platform.embedded status | grep -q stopped; then started_here=1; fi
  $PY -m platform.embedded start
fi
stop_embedded() { if [[ $started_here == 1 ]]; then $PY -m platform.embedded stop || true; fi; }
trap stop_embedded EXIT

bash scripts/ensure_chromium.sh  # the browser tests' Chromium, from Debian when missing

# `python -m pytest` (not `pytest`) keeps the repository root first on sys.path, so the
# project's `platform` package is the one imported (see platform/__init__.py).
$PY -m pytest -q "$@"
