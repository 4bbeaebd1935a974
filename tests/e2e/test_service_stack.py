"""The service as it runs in production: Redis, the worker command and the API command, as processes.

Checks what only whole processes show: the API process has no torch or inference runtime mapped,
no process creates a temporary file or writes to disk while serving jobs (each gets an empty
TMPDIR of its own, listed once the stack is ready and again after the jobs; start-up leaves a few
entries there: billiard's pool directory and ONNX Runtime's telemetry session file), and a real
photo comes back stylized like a direct run of the generator.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from animegan.redis_server import RedisServer, free_port
from animegan.serve import api_command, worker_command

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_DIR = ROOT.parent / "shared" / "weights"
RUNTIME_LIBRARIES = ("libtorch", "onnxruntime", "libopenvino", "libdnnl")


def _stop(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


class Drain:
    """Reads a child's output into memory: logs written to a file would count as disk writes."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, b""):
            self.lines.append(line)

    def dump(self) -> None:
        sys.stderr.write(b"".join(self.lines[-200:]).decode(errors="replace"))


def _spawn(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Drain]:
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process, Drain(process)


def _listing(directories: list[Path]) -> set[Path]:
    return {path for directory in directories for path in directory.rglob("*")}


class Stack:
    def __init__(self, base: str, api: subprocess.Popen[bytes], worker: subprocess.Popen[bytes], tmpdirs: list[Path]):
        self.base, self.api, self.worker, self.tmpdirs = base, api, worker, tmpdirs
        self.tmp_at_start = _listing(tmpdirs)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, service_env: Callable[..., dict[str, str]]) -> Iterator[Stack]:
    # Not spawn_worker/spawn_api: their output goes to log files, which would count as disk writes here.
    api_tmp, worker_tmp = tmp_path_factory.mktemp("api-tmp"), tmp_path_factory.mktemp("worker-tmp")
    with RedisServer() as redis_server:
        env = service_env(
            ANIMEGAN_REDIS_URL=redis_server.url,
            ANIMEGAN_MAX_SIDE="128",
            ANIMEGAN_WORKER_CONCURRENCY="1",
            ANIMEGAN_HEARTBEAT_INTERVAL_S="1",
        )
        worker, worker_output = _spawn(worker_command(), {**env, "TMPDIR": str(worker_tmp)})
        port = free_port()
        api, api_output = _spawn(api_command("127.0.0.1", port), {**env, "TMPDIR": str(api_tmp)})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while not _ready(base):
                assert worker.poll() is None, "the worker process died"
                assert api.poll() is None, "the API process died"
                assert time.monotonic() < deadline, "the stack did not become ready"
                time.sleep(0.3)
            yield Stack(base, api, worker, [api_tmp, worker_tmp])
        finally:
            _stop(api)
            _stop(worker)
            api_output.dump()
            worker_output.dump()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _run_job(base: str, image: bytes) -> tuple[dict[str, object], bytes]:
    accepted = httpx.post(f"{base}/stylize", files={"image": ("photo.jpg", image, "image/jpeg")}, timeout=30)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        job: dict[str, object] = httpx.get(f"{base}/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    result = httpx.get(f"{base}/jobs/{job_id}/result")
    assert result.status_code == 200
    return job, result.content


def _mapped_runtime_libraries(pid: int) -> set[str]:
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split()[-1]
        if any(lib in path for lib in RUNTIME_LIBRARIES):
            found.add(path)
    return found


def _write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise AssertionError("no write_bytes in /proc/<pid>/io")


def test_real_photo_comes_back_like_a_direct_run(stack: Stack, samples_dir: Path) -> None:
    from imaging.decode import decode_image
    from inference.pipeline import Stylizer

    photo = (samples_dir / "bryandlee_input2.jpg").read_bytes()
    job, result = _run_job(stack.base, photo)
    normalized = decode_image(photo, max_side=128).image
    served = np.asarray(Image.open(io.BytesIO(result)).convert("RGB"), dtype=np.float64)
    direct = np.asarray(Stylizer.load("hayao", weights_dir=WEIGHTS_DIR, threads=1).stylize(normalized), np.float64)
    assert served.shape == direct.shape
    mse = float(np.mean((served - direct) ** 2))
    assert mse == 0 or 10 * np.log10(255.0**2 / mse) >= 45
    assert job["input"] == {"width": 128, "height": 87, "original_width": 1279, "original_height": 867}


def test_api_process_never_maps_torch_or_the_inference_runtime(stack: Stack) -> None:
    api = psutil.Process(stack.api.pid)
    assert not _mapped_runtime_libraries(api.pid)
    pool_children = psutil.Process(stack.worker.pid).children(recursive=True)
    assert any(_mapped_runtime_libraries(child.pid) for child in pool_children)


def test_no_temporary_files_and_no_disk_writes_on_the_request_path(stack: Stack, samples_dir: Path) -> None:
    with Image.open(samples_dir / "coffee.jpg") as img:
        buffer = io.BytesIO()
        img.convert("RGB").save(buffer, "JPEG", quality=90)
    _run_job(stack.base, buffer.getvalue())  # warm: lazy imports and first-use allocations happen here
    processes = [psutil.Process(stack.api.pid), *psutil.Process(stack.worker.pid).children(recursive=True)]
    before = {p.pid: _write_bytes(p.pid) for p in processes}
    for quality in (80, 70, 60):
        buffer = io.BytesIO()
        with Image.open(samples_dir / "coffee.jpg") as img:
            img.convert("RGB").save(buffer, "JPEG", quality=quality)
        _run_job(stack.base, buffer.getvalue())
    after = {p.pid: _write_bytes(p.pid) for p in processes}
    assert after == before, "a service process wrote to disk while serving jobs"
    assert _listing(stack.tmpdirs) == stack.tmp_at_start, "temporary files appeared while serving jobs"
