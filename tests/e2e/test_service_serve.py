"""``animegan serve``: one command starts a private Redis, the workers and the API; SIGTERM stops all.

Runs the real launcher in a subprocess with the real weights: it must print when ready, serve a
job, expose the worker processes' series on the API's /metrics, pin one child per core when there
are as many children as cores, and leave no process behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import redis

from animegan.redis_server import free_port
from jobstore.heartbeats import live_heartbeats
from jobstore.keys import WORKERS_KEY

ROOT = Path(__file__).resolve().parents[2]


class Output:
    """Collects the launcher's stdout lines from a reader thread."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
            self.lines.append(raw.decode(errors="replace"))

    def wait_for(self, pattern: str, process: subprocess.Popen[bytes], timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.lines:
                if match := re.search(pattern, line):
                    return match
            assert process.poll() is None, f"serve exited early: {''.join(self.lines)}"
            time.sleep(0.2)
        raise TimeoutError(f"no line matching {pattern!r} in {''.join(self.lines)}")


def test_serve_runs_everything_and_sigterm_stops_everything(
    tmp_path: Path, service_env: Callable[..., dict[str, str]]
) -> None:
    env = service_env(
        ANIMEGAN_MAX_SIDE="128",
        ANIMEGAN_HEARTBEAT_INTERVAL_S="1",
        TMPDIR=str(tmp_path),
    )
    port = free_port()
    workers = len(os.sched_getaffinity(0))
    serve = subprocess.Popen(
        [sys.executable, "-m", "animegan.serve", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    output = Output(serve.stdout)
    descendants: list[psutil.Process] = []
    metrics_dirs: list[Path] = []
    try:
        redis_url = output.wait_for(r"private Redis on (redis://\S+)", serve, 60).group(1)
        output.wait_for(r"ready on http://127\.0\.0\.1:\d+", serve, 300)
        base = f"http://127.0.0.1:{port}"
        # Ready means one worker process is up; wait for all of them before checking the pinning.
        deadline = time.monotonic() + 120
        while httpx.get(f"{base}/readyz").json()["workers"] < workers:
            assert time.monotonic() < deadline
            time.sleep(0.2)

        photo = (ROOT.parent / "shared" / "samples" / "chelsea.jpg").read_bytes()
        job_id = httpx.post(f"{base}/stylize", files={"image": ("c.jpg", photo, "image/jpeg")}).json()["id"]
        deadline = time.monotonic() + 120
        while httpx.get(f"{base}/jobs/{job_id}").json()["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        result = httpx.get(f"{base}/jobs/{job_id}/result")
        assert result.status_code == 200
        assert result.headers["content-type"] == "image/png"

        metrics = httpx.get(f"{base}/metrics").text
        assert re.search(r'^animegan_inference_seconds_count\{style="hayao"\} 1\.0$', metrics, re.M), metrics
        assert 'animegan_jobs_total{outcome="succeeded",style="hayao"} 1.0' in metrics
        assert "animegan_http_requests_total" in metrics

        with redis.Redis.from_url(redis_url) as client:
            beats = live_heartbeats(client.hgetall(WORKERS_KEY))  # type: ignore[arg-type]
        if workers > 1:  # one child per core: each child on a core of its own
            cores = [os.sched_getaffinity(b.pid) for b in beats]
            assert all(len(c) == 1 for c in cores)
            assert len(set.union(*cores)) == workers

        descendants = psutil.Process(serve.pid).children(recursive=True)
        assert len(descendants) >= 3 + workers  # redis, celery main + children, uvicorn
        metrics_dirs = list(Path("/dev/shm").glob(f"animegan-metrics-{serve.pid}"))
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(90)
    assert code == 0, "".join(output.lines)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, f"left behind: {[p.pid for p in alive]}"
    assert all(not d.exists() for d in metrics_dirs)
    assert any("stopping" in line for line in output.lines)
