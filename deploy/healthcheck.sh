#!/bin/sh
# Container health check of the animegan image. ANIMEGAN_HEALTHCHECK picks what "healthy" means:
#   api      the gateway answers GET /healthz (process alive; readiness is /readyz);
#            ANIMEGAN_HEALTHCHECK_URL overrides http://127.0.0.1:8000/healthz
#   worker   this Celery node answers a broker ping (its main process consumes and is connected)
#   metrics  the worker's metrics server answers (lighter than a ping: no broker round trip)
#   none     always healthy
set -eu

http_get() {
  python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10).read(1)' "$1"
}

case "${ANIMEGAN_HEALTHCHECK:-api}" in
  api) http_get "${ANIMEGAN_HEALTHCHECK_URL:-http://127.0.0.1:8000/healthz}" ;;
  # Without PROMETHEUS_MULTIPROC_DIR: importing the app creates metrics, and every check would
  # otherwise leave a dead process's files in the worker's metrics directory.
  worker) exec env -u PROMETHEUS_MULTIPROC_DIR celery --app worker.celery_app inspect ping --timeout 10 \
    --destination "${ANIMEGAN_WORKER_NODE:-celery@$(hostname)}" >/dev/null ;;
  metrics) http_get "http://127.0.0.1:${ANIMEGAN_METRICS_PORT:-9100}/metrics" ;;
  none) exit 0 ;;
  *) echo "unknown ANIMEGAN_HEALTHCHECK=${ANIMEGAN_HEALTHCHECK}" >&2; exit 2 ;;
esac
