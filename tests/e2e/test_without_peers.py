"""The service without the `peers` extra: every precision the CPU has runs on the native kernels alone.

ONNX Runtime, OpenVINO and onnx are the graph fallback and the benchmark's peers, not dependencies
of the service. Here every process gets a ``sitecustomize`` that sets their ``sys.modules`` entries
to None, so any import of them fails (as in an install without the extra); the processes are the
production commands with real Redis and the real hayao weights. Hiding ``inference._onednn`` as
well gives an install where the kernels did not build: the worker and ``animegan stylize`` must
then stop at start with one line saying what to install.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from inference.precision import cpu_flags, has_int8_units, has_native_bf16

ROOT = Path(__file__).resolve().parents[2]
PEERS = ("onnxruntime", "openvino", "onnx")
# The hardware decides which precisions run here: fp32 everywhere, bf16 and int8 where the CPU has the units.
PRECISIONS = [
    "fp32",
    *(["bf16"] if has_native_bf16(cpu_flags()) else []),
    *(["int8"] if has_int8_units(cpu_flags()) else []),
]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def hiding(folder: Path, modules: tuple[str, ...]) -> str:
    """A PYTHONPATH under which importing any of ``modules`` fails in every process and its children."""
    folder.mkdir()
    lines = "".join(f'sys.modules["{name}"] = None  # not installed\n' for name in modules)
    (folder / "sitecustomize.py").write_text(f"import sys\n\n{lines}")
    return os.pathsep.join([str(folder), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="module")
def no_peers_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return hiding(tmp_path_factory.mktemp("hidden") / "no-peers", PEERS)


@pytest.fixture(scope="module")
def nothing_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Neither the peers nor the native kernels: an install where the kernels did not build."""
    return hiding(tmp_path_factory.mktemp("hidden") / "nothing", (*PEERS, "inference._onednn"))


def _run(command: list[str], pythonpath: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_")}
    env.update(PYTHONPATH=pythonpath, **extra)
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _stylize(
    pythonpath: str, photo: Path, weights: Path, out: Path, precision: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "animegan", "stylize", str(photo), "--out", str(out), "--weights", str(weights)]
    return _run([*command, "--max-side", "96", "--precision", precision], pythonpath)


def test_the_peers_really_are_unimportable_there(no_peers_path: str) -> None:
    for module in PEERS:
        done = _run([sys.executable, "-c", f"import {module}"], no_peers_path)
        assert done.returncode != 0
        assert f"import of {module} halted" in done.stderr
    done = _run(
        [sys.executable, "-c", "from inference import runtime_onednn as r; print(r.available())"], no_peers_path
    )
    assert done.stdout.strip() == "True", done.stderr


@pytest.mark.parametrize("precision", PRECISIONS)
def test_stylize_runs_each_precision_of_the_cpu_on_the_native_kernels(
    no_peers_path: str, samples_dir: Path, hayao_weights: Path, tmp_path: Path, precision: str
) -> None:
    done = _stylize(no_peers_path, samples_dir / "chelsea.jpg", hayao_weights, tmp_path, precision)
    assert done.returncode == 0, done.stderr
    assert f"hayao: {precision} on onednn" in done.stderr
    with Image.open(tmp_path / "chelsea.png") as image:
        assert max(image.size) == 96


@pytest.mark.parametrize("precision", PRECISIONS)
def test_worker_and_api_serve_a_job_in_each_precision_of_the_cpu(
    no_peers_path: str,
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo: Callable[[], bytes],
    jobs: Any,
    precision: str,
) -> None:
    spawn_worker(redis_url, PYTHONPATH=no_peers_path, ANIMEGAN_PRECISION=precision)
    api = spawn_api(redis_url, PYTHONPATH=no_peers_path)
    job, _ = jobs.follow(api.base, jobs.submit(api.base, photo()))
    assert job["status"] == "succeeded", job
    assert job["output"]["precision"] == precision
    result = httpx.get(f"{api.base}/jobs/{job['id']}/result")
    assert result.status_code == 200
    assert result.content.startswith(b"\x89PNG")


def test_without_kernels_and_peers_stylize_stops_with_one_line_saying_what_to_install(
    nothing_path: str, samples_dir: Path, hayao_weights: Path, tmp_path: Path
) -> None:
    done = _stylize(nothing_path, samples_dir / "chelsea.jpg", hayao_weights, tmp_path / "out", "auto")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: Precision fp32 needs the native kernels or the graph fallback on ONNX Runtime, and neither is "
        "installed: install the manylinux wheel (`make wheel`), which carries them and oneDNN, or install g++ and "
        "libdnnl-dev, then the package again; or install the fallback: pip install 'animegan[peers]'."
    ]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_without_kernels_and_peers_the_worker_stops_with_one_line_saying_what_to_install(
    nothing_path: str, redis_url: str, spawn_worker: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    process = spawn_worker(redis_url, wait=False, log=log, PYTHONPATH=nothing_path, ANIMEGAN_PRECISION="fp32")
    assert process.wait(120) != 0
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("animegan worker: Precision fp32 needs the native kernels or the graph fallback")
    assert "`make wheel`" in last
    assert "pip install 'animegan[peers]'" in last
