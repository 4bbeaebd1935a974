#!/usr/bin/env bash
# Idempotent set-up used by the Makefile: `install` (service), `dev` (service + test tools),
# `system` (Debian packages the tests use: prometheus/promtool, chromium, docker-compose).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

make_venv() {
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
}

case "${1:-install}" in
  install)
    make_venv
    "$VENV/bin/pip" install --quiet -e .
    ;;
  dev)
    make_venv
    "$VENV/bin/pip" install --quiet -e '.[dev]'
    ;;
  system)
    need=()
    command -v promtool >/dev/null || need+=(prometheus)
    command -v chromium >/dev/null || need+=(chromium)
    command -v docker-compose >/dev/null || need+=(docker-compose)
    if [ ${#need[@]} -gt 0 ]; then
      if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    ;;
  *) echo "usage: $0 install|dev|system" >&2; exit 2 ;;
esac
