"""Lock files for reproducible installs: `make lock` writes them, `--check` says whether they are current.

requirements/dev.txt      the development and test environment (`scripts/setup.sh dev`, `make test`, CI)
requirements/service.txt  the service alone (the container image)
requirements/peers.txt    the service and the `peers` extra: the graph fallback, for installs where the
                          native kernels did not build (`scripts/setup.sh install`)
requirements/build.txt    building and repairing the wheel alone: the build requirements and the `wheel`
                          extra (the container image's build stage)

Each holds the build requirements too (installs build the project without isolation, from the
lock alone), and is resolved by uv for Linux and every Python the project supports (universal markers), with the
sha256 of every file PyPI has for each pinned version, and installed with `pip --require-hashes`.
torch is resolved as its CPU build (requirements/torch-cpu.txt) so that none of the CUDA packages
PyPI's Linux torch pulls in reach the lock, and is left out of it: `scripts/setup.sh` installs the
pinned CPU build itself. pyproject.toml keeps ranges (a library must not pin its users).

Each lock records the sha256 of its inputs (the dependency tables of pyproject.toml and the torch pin);
`--check` recomputes it and fails when pyproject.toml changed but the locks were not regenerated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK_DIR = ROOT / "requirements"
TORCH_PIN = LOCK_DIR / "torch-cpu.txt"
LOCKS = {"dev": ["--extra", "dev"], "service": [], "peers": ["--extra", "peers"], "build": []}
# Locks resolved from requirement lines alone (not from pyproject.toml's dependencies): name -> extras read.
STANDALONE = {"build": ["wheel"]}
HEADER = "# inputs-sha256: "
# Where the CPU build of torch comes from when resolving: a local wheel folder if the machine has one,
# else PyTorch's own listing of its wheels (PyPI has only the CUDA build for Linux).
TORCH_FIND_LINKS = os.environ.get("TORCH_FIND_LINKS", "")
TORCH_WHEELS_URL = "https://download.pytorch.org/whl/torch/"


def inputs_digest(pyproject: Path = ROOT / "pyproject.toml", torch_pin: Path = TORCH_PIN) -> str:
    """sha256 of what a resolution reads: dependency tables only, so a change to tool settings needs no relock."""
    project = tomllib.loads(pyproject.read_text())
    inputs = {
        "requires-python": project["project"].get("requires-python"),
        "dependencies": project["project"].get("dependencies", []),
        "optional-dependencies": project["project"].get("optional-dependencies", {}),
        "build-system": project.get("build-system", {}).get("requires", []),
        "torch": torch_pin.read_text().split(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path) -> str | None:
    """The inputs' sha256 a lock file was made from, or None when it has none."""
    for line in lock.read_text().splitlines():
        if line.startswith(HEADER):
            return line.removeprefix(HEADER).strip()
    return None


def stale_locks() -> list[str]:
    """Names of the locks that are missing or were made from other inputs than today's."""
    digest = inputs_digest()
    return [
        name
        for name in LOCKS
        if not (LOCK_DIR / f"{name}.txt").is_file() or recorded_digest(LOCK_DIR / f"{name}.txt") != digest
    ]


def _torch_source() -> list[str]:
    if TORCH_FIND_LINKS:
        return ["--find-links", TORCH_FIND_LINKS]
    local = Path("/opt/wheels")
    if any(local.glob("torch-*+cpu-*.whl")):
        return ["--find-links", str(local)]
    return ["--find-links", TORCH_WHEELS_URL]


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        raise SystemExit("lock: uv is not installed: run `make install-dev` (the dev extra installs it)")
    return found


def _stdin(name: str) -> str:
    """Requirement lines a lock resolves besides pyproject.toml's: the build requirements, and for a
    standalone lock the extras it names."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lines = list(pyproject["build-system"]["requires"])
    for extra in STANDALONE.get(name, []):
        lines += pyproject["project"]["optional-dependencies"][extra]
    return "\n".join(lines)


def write_locks() -> None:
    """Resolve every lock afresh (newest versions the ranges allow today) and stamp them."""
    digest = inputs_digest()
    for name, extras in LOCKS.items():
        out = LOCK_DIR / f"{name}.txt"
        sources = ["-"] if name in STANDALONE else ["pyproject.toml", "-"]
        command = [
            _uv(),
            "pip",
            "compile",
            *sources,  # "-": the build requirements, on stdin: installs run without build isolation
            *extras,
            "--universal",
            "--python-version",
            "3.11",
            "--generate-hashes",
            "--override",
            str(TORCH_PIN.relative_to(ROOT)),
            "--no-emit-package",
            "torch",
            "--custom-compile-command",
            "make lock",
            "--quiet",
            "--output-file",
            str(out),
            *_torch_source(),
        ]
        subprocess.run(command, cwd=ROOT, check=True, input=_stdin(name), text=True)
        resolved = out.read_text()
        out.write_text(f"{HEADER}{digest}\n{resolved}")
        sys.stdout.write(f"lock: wrote {out.relative_to(ROOT)} ({resolved.count('==')} pins)\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a lock is missing or out of date")
    args = parser.parse_args()
    if args.check:
        stale = stale_locks()
        if stale:
            sys.stderr.write(f"lock: {', '.join(stale)} out of date with pyproject.toml: run `make lock`\n")
            return 1
        return 0
    write_locks()
    return 0


if __name__ == "__main__":
    sys.exit(main())
