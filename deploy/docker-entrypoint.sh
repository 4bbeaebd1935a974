#!/bin/sh
# Entrypoint of the animegan image, for every role: prepare per-container state, then exec the
# command (so it runs as PID 1 and receives SIGTERM directly: Celery's warm shutdown and
# uvicorn's graceful stop depend on it).
set -eu

# prometheus_client multiprocess mode sums every *.db file in this directory: files left by an
# earlier run of the container would be counted again, so it starts empty.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
  find "${PROMETHEUS_MULTIPROC_DIR}" -mindepth 1 -delete
fi

# Weights at first start, for images built without them: fetch (and verify) each listed style
# into ANIMEGAN_CACHE_DIR, which should then be a volume so the download happens once.
if [ -n "${ANIMEGAN_FETCH_ON_START:-}" ]; then
  for style in $(printf '%s' "${ANIMEGAN_FETCH_ON_START}" | tr ',' ' '); do
    animegan weights fetch "${style}" --quiet
  done
fi

exec "$@"
