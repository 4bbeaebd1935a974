"""Import boundaries at run time: each package, imported in a fresh interpreter, pulls in nothing it must not.

import-linter checks the static import graph (pyproject.toml); these tests check what really lands
in ``sys.modules`` (lazy imports, plugins and import side effects included). Every module of a
package is imported, so a module added later is checked too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def modules_after_importing_package(package: str) -> set[str]:
    """Every module name in sys.modules after importing each module of ``package`` in a fresh interpreter."""
    script = (
        "import importlib, json, pkgutil, sys\n"
        f"root = importlib.import_module({package!r})\n"
        "for info in pkgutil.walk_packages(root.__path__, root.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


# What each layer must never load (STYLE.md section 2): the arrows only point down.
SHARED_FORBIDDEN = (
    "api",
    "worker",
    "inference",
    "animegan",
    *MODEL_RUNTIMES,
    "celery",
    "kombu",
    "fastapi",
    "starlette",
)


def test_jobstore_loads_nothing_above_it_nor_inference_telemetry_or_a_runtime() -> None:
    loaded = tops(modules_after_importing_package("jobstore"))
    assert_absent(loaded, (*SHARED_FORBIDDEN, "telemetry", "prometheus_client"))


def test_telemetry_loads_nothing_above_it_nor_inference_jobstore_or_a_runtime() -> None:
    loaded = tops(modules_after_importing_package("telemetry"))
    assert_absent(loaded, (*SHARED_FORBIDDEN, "jobstore", "redis"))


def test_api_loads_no_worker_no_inference_and_no_model_runtime() -> None:
    loaded = tops(modules_after_importing_package("api"))
    assert_absent(loaded, ("worker", "animegan", "inference", *MODEL_RUNTIMES))
    assert "imaging" in loaded


def test_worker_loads_no_web_layer() -> None:
    assert_absent(tops(modules_after_importing_package("worker")), ("api", "animegan", "fastapi", "starlette"))


def test_inference_loads_nothing_of_the_service() -> None:
    loaded = tops(modules_after_importing_package("inference"))
    forbidden = ("api", "worker", "jobstore", "telemetry", "animegan", "fastapi", "starlette", "celery", "redis")
    assert_absent(loaded, (*forbidden, "prometheus_client"))


def test_imaging_loads_nothing_of_the_project_no_model_runtime_and_no_service_stack() -> None:
    loaded = tops(modules_after_importing_package("imaging"))
    project = ("api", "worker", "jobstore", "telemetry", "inference", "animegan")
    assert_absent(loaded, (*project, *MODEL_RUNTIMES, *SERVICE_STACK))
    assert {"PIL", "numpy"} <= loaded


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


# The client goes into other people's applications: httpx and the standard library only.
CLIENT_FORBIDDEN = (
    *MODEL_RUNTIMES,
    *SERVICE_STACK,
    "api",
    "worker",
    "jobstore",
    "inference",
    "numpy",
    "PIL",
)


def test_the_python_client_loads_only_httpx_and_the_standard_library() -> None:
    loaded = tops(modules_after_importing_package("animegan.client"))
    assert_absent(loaded, CLIENT_FORBIDDEN)
    assert "httpx" in loaded


def test_the_submit_command_loads_no_model_runtime_store_or_web_framework() -> None:
    loaded = loaded_after(
        "import contextlib, io\n"
        "from animegan.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['submit', '--help']) == 0\n"
        "import animegan.submit_cli"
    )
    assert_absent(loaded, CLIENT_FORBIDDEN)
