#!/usr/bin/env bash
# `make demo`: embedded services (unless configured), migrations, three demo counties with
# synthetic data and one nightly run, then web + Celery worker + beat until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT=${PORT:-8000}
DEMO_FARMERS=${DEMO_FARMERS:-20000}
export DEBUG=${DEBUG:-true}

started_embedded=0
if [[ -z "${DATABASE_URL:-}" || -z "${REDIS_URL:-}" ]]; then
  if $PY -m platform.embedded status | grep -q stopped; then started_embedded=1; fi
  $PY -m platform.embedded start
fi

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "stopping demo…"
  if ((${#pids[@]})); then kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; fi
  if [[ $started_embedded == 1 ]]; then $PY -m platform.embedded stop; fi
}
trap cleanup EXIT INT TERM

$PY manage.py migrate_schemas --executor=batched -v 0
$PY manage.py setup_demo --farmers "$DEMO_FARMERS"
$PY manage.py collectstatic --noinput -v 0

mkdir -p .data/logs
$PY -m gunicorn platform.wsgi --bind "127.0.0.1:$PORT" --workers 3 --access-logfile .data/logs/web.log \
  --error-logfile .data/logs/web-error.log &
pids+=($!)
$PY -m celery -A platform.celery worker --concurrency 2 --loglevel INFO --logfile .data/logs/worker.log &
pids+=($!)
$PY -m celery -A platform.celery beat --loglevel INFO --logfile .data/logs/beat.log \
  --schedule .data/celerybeat-schedule &
pids+=($!)

$PY manage.py setup_demo --print-only --port "$PORT"
echo "logs: .data/logs/ — press Ctrl-C to stop everything this started"
wait -n "${pids[@]}"
