"""scripts/setup.sh's install: the graph fallback (the `peers` lock) only where the native kernels did not build.

The venv's python and pip are stand-ins that log their arguments (the script's control flow is what
is tested here); the python answers the script's "do the kernels load?" question as the test says.
g++ and libdnnl-dev are installed (`make install-dev`), so the script's native_deps installs nothing.
The real installs are proven elsewhere: tests/e2e/test_without_peers.py runs the service without the
peers, tests/image/test_wheel.py installs the wheel where nothing can build the kernels.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
STAND_IN = """#!/bin/sh
echo "$(basename "$0") $*" >> "$SETUP_LOG"
case "$*" in *runtime_onednn*) exit "$KERNELS_LOAD_EXIT" ;; esac
exit 0
"""


def run_install(tmp_path: Path, *, kernels_load: bool) -> tuple[list[str], str]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for tool in ("python", "pip"):
        (venv / "bin" / tool).write_text(STAND_IN)
        (venv / "bin" / tool).chmod(0o755)
    log = tmp_path / "setup.log"
    env = {
        **os.environ,
        "VENV": str(venv),
        "SETUP_LOG": str(log),
        "KERNELS_LOAD_EXIT": "0" if kernels_load else "1",
    }
    done = subprocess.run(
        [str(ROOT / "scripts" / "setup.sh"), "install"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines(), done.stderr


@pytest.mark.parametrize("kernels_load", [True, False])
def test_install_adds_the_peers_lock_only_when_the_kernels_do_not_load(tmp_path: Path, kernels_load: bool) -> None:
    calls, stderr = run_install(tmp_path, kernels_load=kernels_load)
    assert "pip install --quiet --require-hashes --no-deps -r requirements/service.txt" in calls
    peers = "pip install --quiet --require-hashes --no-deps -r requirements/peers.txt"
    assert (peers in calls) is not kernels_load
    assert ("installing the graph fallback (the peers extra)" in stderr) is not kernels_load
