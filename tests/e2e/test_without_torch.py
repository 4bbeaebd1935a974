"""Everything a user runs works with torch unimportable: ``animegan stylize``, the worker, the API.

torch is an optional extra (the reference model, the eager benchmark variant, the tests). Here
every process gets a ``sitecustomize`` that sets ``sys.modules["torch"] = None``, so any
``import torch`` fails (as it would in an install without the extra); the processes are the
production commands, with real Redis and the real hayao weights, and a job makes the round trip.
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

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def no_torch_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PYTHONPATH under which ``import torch`` fails in every process and its children."""
    folder = tmp_path_factory.mktemp("no-torch")
    (folder / "sitecustomize.py").write_text('import sys\n\nsys.modules["torch"] = None  # torch is not installed\n')
    return os.pathsep.join([str(folder), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def _run(command: list[str], pythonpath: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_")}
    env.update(PYTHONPATH=pythonpath, **extra)
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_torch_really_is_unimportable_there(no_torch_path: str) -> None:
    done = _run([sys.executable, "-c", "import torch"], no_torch_path)
    assert done.returncode != 0
    assert "import of torch halted" in done.stderr


def test_stylize_runs_without_torch(no_torch_path: str, samples_dir: Path, hayao_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "anime"
    command = [sys.executable, "-m", "animegan", "stylize", str(samples_dir / "chelsea.jpg"), "--out", str(out)]
    done = _run([*command, "--weights", str(hayao_weights), "--max-side", "96"], no_torch_path)
    assert done.returncode == 0, done.stderr
    with Image.open(out / "chelsea.png") as image:
        assert max(image.size) == 96


def test_bench_leaves_out_the_eager_variant_and_refuses_it_when_asked(no_torch_path: str) -> None:
    done = _run([sys.executable, "-m", "animegan", "bench", "--variants", "eager"], no_torch_path)
    assert done.returncode == 2
    assert "the eager variant needs torch" in done.stderr
    assert "animegan[torch]" in done.stderr
    assert "download.pytorch.org/whl/cpu" in done.stderr


def test_worker_and_api_serve_a_job_without_torch(
    no_torch_path: str,
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo: Callable[[], bytes],
    jobs: Any,
) -> None:
    spawn_worker(redis_url, PYTHONPATH=no_torch_path)
    api = spawn_api(redis_url, PYTHONPATH=no_torch_path)
    assert httpx.get(f"{api.base}/readyz").status_code == 200
    job, _ = jobs.follow(api.base, jobs.submit(api.base, photo()))
    assert job["status"] == "succeeded", job
    result = httpx.get(f"{api.base}/jobs/{job['id']}/result")
    assert result.status_code == 200
    assert result.headers["content-type"] == "image/png"
    assert result.content.startswith(b"\x89PNG")
