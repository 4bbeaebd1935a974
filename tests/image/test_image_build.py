"""The image as built: what the Dockerfile's steps do on a real engine, beyond the build succeeding.

The build itself (the ``image`` fixture) is the test of two defects: BuildKit builds the Dockerfile
with the engine's built-in frontend, no registry reachable (no ``# syntax=`` line to pull), and
pip trusts the CA bundle given as the ``ca-bundle`` secret (here an intercepting proxy's).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]


def user_creation() -> str:
    """The Dockerfile's RUN line that creates the image's user."""
    joined = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return next(line.strip()[4:] for line in joined.splitlines() if line.startswith("RUN ") and "useradd" in line)


def test_the_image_user_is_created_without_a_warning(engine: Any, base_images: dict[str, str]) -> None:
    # The line runs in the base image, as in the build (with the two scripts it makes executable).
    script = f"touch /usr/local/bin/animegan-entrypoint /usr/local/bin/animegan-healthcheck && {user_creation()}"
    done = engine.run("run", "--rm", base_images["python"], "sh", "-c", f"{script} && id animegan", check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip() == "uid=10001(animegan) gid=10001(animegan) groups=10001(animegan)"


def test_the_image_has_the_native_kernels_no_torch_no_weights_and_no_ca_bundle(engine: Any, image: str) -> None:
    script = (
        "import importlib.util, os, sys\n"
        "from inference import runtime_onednn\n"
        "print(runtime_onednn.available(), importlib.util.find_spec('torch') is None, os.getuid(),\n"
        "      os.listdir('/var/cache/animegan'), os.path.exists('/run/secrets/ca-bundle'), sys.version_info[:2])\n"
    )
    done = engine.run("run", "--rm", image, "python", "-c", script)
    assert done.stdout.strip() == "True True 10001 [] False (3, 11)"


def test_the_image_runs_the_kernels_on_the_onednn_its_wheel_carries_without_compiler_or_peers(
    engine: Any, image: str
) -> None:
    """The runtime stage installs the wheel: no libdnnl package, no compiler, no inference runtime."""
    script = (
        "for tool in g++ gcc cc; do command -v $tool; done; find / -xdev -name 'libdnnl*' 2>/dev/null; "
        "python -c \"import importlib.util as u; print([m for m in ('onnxruntime', 'openvino', 'onnx', 'torch') "
        'if u.find_spec(m)])"'
    )
    done = engine.run("run", "--rm", "--entrypoint", "sh", image, "-c", script)
    *libraries, peers = done.stdout.split("\n")[:-1]
    assert peers == "[]"
    assert libraries, "no oneDNN in the image"
    assert all(path.startswith("/opt/venv/lib/python3.11/site-packages/animegan.libs/") for path in libraries), (
        libraries
    )


def test_the_build_installs_from_the_package_index_it_is_given(
    engine: Any, image: str, image_build_args: list[str]
) -> None:
    """PIP_INDEX_URL reaches pip: an index where nothing listens fails the dependency step, naming it."""
    index = "http://127.0.0.1:9/simple"
    done = engine.run(
        "build", "--progress=plain", *image_build_args, "--build-arg", f"PIP_INDEX_URL={index}",
        "--target", "build", str(ROOT), check=False, timeout=900,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"Looking in indexes: {index}" in done.stderr
    assert "No matching distribution found for" in done.stderr
