"""Import boundaries at run time: each light module, imported in a fresh interpreter, pulls in nothing heavy.

import-linter checks the static import graph; these tests check what really lands in
``sys.modules`` (lazy imports, plugins and import side effects included).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL_RUNTIMES = ("torch", "onnxruntime", "onnx", "openvino")
SERVICE_STACK = ("fastapi", "starlette", "celery", "kombu", "redis", "prometheus_client", "uvicorn")


def loaded_after(code: str) -> set[str]:
    """Top-level package names in sys.modules after running ``code`` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def assert_absent(loaded: set[str], forbidden: tuple[str, ...]) -> None:
    assert not loaded & set(forbidden), f"imported {sorted(loaded & set(forbidden))}"


@pytest.mark.parametrize("module", ["inference.imageio", "inference.errors"])
def test_gateway_image_modules_import_no_model_runtime_or_service_stack(module: str) -> None:
    assert_absent(loaded_after(f"import {module}"), MODEL_RUNTIMES + SERVICE_STACK)


def test_weights_module_is_torch_free() -> None:
    assert_absent(loaded_after("import inference.weights"), MODEL_RUNTIMES + SERVICE_STACK)


def test_animegan_cli_imports_only_the_standard_library() -> None:
    loaded = loaded_after("import animegan.cli")
    assert_absent(loaded, MODEL_RUNTIMES + SERVICE_STACK + ("numpy", "PIL", "inference", "api", "worker"))


def test_styles_and_weights_commands_never_load_a_model_runtime() -> None:
    loaded = loaded_after(
        "import contextlib, io\n"
        "from animegan.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['styles']) == 0\n"
        "    assert main(['weights', 'fetch', '--help']) == 0"
    )
    assert_absent(loaded, MODEL_RUNTIMES + SERVICE_STACK)


def test_api_main_imports_no_model_runtime() -> None:
    assert_absent(loaded_after("import api.main"), MODEL_RUNTIMES)


def test_worker_contract_imports_no_model_runtime_or_celery() -> None:
    assert_absent(loaded_after("import worker.contract"), (*MODEL_RUNTIMES, "celery", "kombu", "inference"))
