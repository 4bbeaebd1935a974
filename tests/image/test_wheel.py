"""The manylinux wheel (`make wheel`) runs the native kernels where there is no compiler and no oneDNN.

The wheel is built from this tree by scripts/wheel.sh (what `make wheel` and the Dockerfile's build
stage run), then installed into a container of the python base image (the registry's or its
stand-in: Debian's Python, no g++, no libdnnl) beside the service's locked dependencies, and
``animegan stylize`` runs there in fp32 and in the CPU's fast precision (``auto``), on the oneDNN
library the wheel carries.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from inference.precision import resolve_precision

ROOT = Path(__file__).resolve().parents[2]
PEERS = ("onnxruntime", "openvino", "onnx", "torch")
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [str(ROOT / "scripts" / "wheel.sh"), str(dist)],
        cwd=ROOT,
        env={**env, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (found,) = dist.glob("animegan-*.whl")
    return found


class Container:
    """A running container of the python base image with the wheel, the lock, weights and samples mounted."""

    def __init__(self, engine: Any, name: str, out: Path) -> None:
        self.engine = engine
        self.name = name
        self.out = out  # the host's side of /out

    def sh(self, script: str, *, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done: subprocess.CompletedProcess[str] = self.engine.run(
            "exec", self.name, "sh", "-c", script, check=check, timeout=timeout
        )
        return done


@pytest.fixture(scope="module")
def bare(
    engine: Any,
    base_images: dict[str, str],
    pip_options: list[str],
    wheel: Path,
    hayao_weights: Path,
    samples_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Container]:
    """The base image as a user's machine: a venv with the locked dependencies and the wheel, nothing else."""
    out = tmp_path_factory.mktemp("out")
    name = f"animegan-wheel-test-{os.getpid()}"
    mounts = {
        wheel.parent: "/dist",
        ROOT / "requirements": "/lock",
        hayao_weights.parent: "/weights",
        samples_dir: "/samples",
    }
    volumes = [arg for host, inside in mounts.items() for arg in ("--volume", f"{host}:{inside}:ro")]
    engine.run(
        "run", "--detach", "--name", name, *volumes, "--volume", f"{out}:/out", *pip_options,
        base_images["python"], "sleep", "infinity",
    )  # fmt: skip
    container = Container(engine, name, out)
    try:
        container.sh(
            "python -m venv /venv && /venv/bin/pip install --quiet --no-deps --require-hashes -r /lock/service.txt"
            f" && /venv/bin/pip install --quiet --no-deps /dist/{wheel.name}"
        )
        yield container
    finally:
        engine.run("rm", "--force", name, check=False)


def test_the_wheel_is_manylinux_and_carries_the_kernels_and_onednn(wheel: Path) -> None:
    assert re.fullmatch(r"animegan-[\d.]+-cp311-cp311-manylinux_2_\d+_x86_64\.whl", wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert [n for n in names if re.fullmatch(r"inference/_onednn\.cpython-311-x86_64-linux-gnu\.so", n)]
    assert [n for n in names if re.fullmatch(r"animegan\.libs/libdnnl-[0-9a-f]+\.so[.\d]*", n)]
    assert [n for n in names if re.fullmatch(r"animegan\.libs/libgomp-[0-9a-f]+\.so[.\d]*", n)]
    # The inference runtimes are the `peers` extra's, never requirements of the wheel itself.
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    for peer in ("onnxruntime", "openvino", "onnx"):
        found = [line for line in requires if re.match(rf"Requires-Dist: {peer}\b", line)]
        assert found, peer
        assert all('extra == "peers"' in line or 'extra == "dev"' in line for line in found), found


def test_the_base_has_no_compiler_and_no_onednn_but_the_wheels(bare: Container) -> None:
    done = bare.sh("for tool in g++ c++ gcc cc; do command -v $tool; done; true")
    assert done.stdout.strip() == ""
    done = bare.sh("find / -xdev -name 'libdnnl*' 2>/dev/null; true")
    libraries = done.stdout.split()
    assert libraries, "the wheel's oneDNN was not installed"
    assert all(path.startswith("/venv/lib/python3.11/site-packages/animegan.libs/") for path in libraries), libraries


def test_the_wheel_installs_beside_the_locked_dependencies_without_any_inference_runtime(bare: Container) -> None:
    assert bare.sh("/venv/bin/pip check").returncode == 0
    script = f"import importlib.util as u; print([m for m in {PEERS!r} if u.find_spec(m)])"
    assert bare.sh(f"/venv/bin/python -c {script!r}").stdout.strip() == "[]"


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_stylize_runs_on_the_kernels_the_wheel_carries(bare: Container, precision: str) -> None:
    """fp32 and the CPU's fast precision (auto: bf16, else int8, else fp32) both run from the wheel."""
    expected = resolve_precision(precision, native=True, fallbacks=frozenset())
    done = bare.sh(
        f"cd /tmp && /venv/bin/animegan stylize /samples/chelsea.jpg --weights /weights/hayao.pt --max-side 128 "
        f"--precision {precision} --out /out/{precision}"
    )
    assert f"hayao: {expected} on onednn" in done.stderr
    with Image.open(bare.out / precision / "chelsea.png") as image:
        assert max(image.size) == 128
