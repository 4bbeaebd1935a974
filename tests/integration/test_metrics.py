"""Metrics of the real processes: a prefork worker serving its own port, the gateway as a process.

Every endpoint's exposition passes ``promtool check metrics``; the numbers are checked against
what the test did (jobs, duplicates, refusals) and against the kernel (the live pids, RSS
measured from outside while a job runs); a SIGKILLed pool child disappears from the RSS series
while the counters it wrote stay.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from animegan.redis_server import free_port
from api.config import ApiSettings
from api.jobs.sender import create_celery_client
from inference.precision import resolve_precision
from jobstore.keys import QUEUE_NAME, TASK_NAME

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)
MiB = 1024 * 1024
SAMPLES = ROOT.parent / "shared" / "samples"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def promtool_check(text: str) -> None:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: run `make system-deps` (scripts/setup.sh installs Debian's prometheus package)"
    done = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def scrape(url: str) -> tuple[str, Samples]:
    text = httpx.get(url, timeout=10).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def present(samples: Samples, name: str, **labels: str) -> float:
    found = value(samples, name, **labels)
    assert found is not None, f"no sample {name} {labels}"
    return found


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def rss_processes(samples: Samples) -> set[tuple[str, int]]:
    return {(s["component"], int(s["pid"])) for s in series(samples, "animegan_process_resident_memory_bytes")}


def wait_until(check: Callable[[], Any], timeout_s: float = 120.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise TimeoutError(what)


def pool_children(worker: subprocess.Popen[bytes]) -> set[int]:
    return {c.pid for c in psutil.Process(worker.pid).children()}


def submit(base: str, data: bytes, name: str = "photo.jpg") -> httpx.Response:
    return httpx.post(f"{base}/stylize", files={"image": (name, data, "image/jpeg")}, timeout=30)


def wait_finished(base: str, job_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
        return job if job["status"] in ("succeeded", "failed") else None

    result: dict[str, Any] = wait_until(finished, 120, f"job {job_id}")
    return result


def leave_stale_counts(directory: Path) -> None:
    """What an earlier run leaves behind: files of a process that is gone, with 1000 jobs counted."""
    code = "from worker import metrics; metrics.JOBS.labels('hayao', 'succeeded').inc(1000)"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    assert any(directory.iterdir())


def test_worker_and_gateway_export_every_family_and_pass_promtool(
    tmp_path: Path, redis_url: str, spawn_worker: Any, spawn_api: Any, photo: Callable[[], bytes]
) -> None:
    worker_dir, api_dir = tmp_path / "worker-metrics", tmp_path / "api-metrics"
    worker_dir.mkdir()
    api_dir.mkdir()
    leave_stale_counts(worker_dir)
    port = free_port()
    worker = spawn_worker(
        redis_url,
        ANIMEGAN_WORKER_CONCURRENCY="2",
        ANIMEGAN_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(worker_dir),
    )
    api = spawn_api(redis_url, PROMETHEUS_MULTIPROC_DIR=str(api_dir), ANIMEGAN_MAX_UPLOAD_BYTES="65536")
    worker_url, api_url = f"http://127.0.0.1:{port}/metrics", f"{api.base}/metrics"
    wait_until(lambda: len(pool_children(worker)) == 2, 120, "two pool children")

    photos = [photo() for _ in range(3)]
    ids = [submit(api.base, data).json()["id"] for data in photos]
    duplicate = submit(api.base, photos[0])
    assert duplicate.headers.get("X-Deduplicated") == "true"
    assert submit(api.base, b"GIF89a" + bytes(64), "x.gif").status_code == 415
    assert submit(api.base, bytes(100_000)).status_code == 413
    assert all(wait_finished(api.base, job_id)["status"] == "succeeded" for job_id in ids)

    # Pool children refresh their RSS every second: wait until both have reported.
    children = pool_children(worker)
    expected_worker = {("worker_main", worker.pid)} | {("worker", pid) for pid in children}
    wait_until(lambda: rss_processes(scrape(worker_url)[1]) == expected_worker, 30, "RSS of every worker process")

    worker_text, w = scrape(worker_url)
    api_text, a = scrape(api_url)
    promtool_check(worker_text)
    promtool_check(api_text)

    # Gateway: what it saw, what Redis says, its own process.
    assert rss_processes(a) == {("api", api.process.pid)}
    assert present(a, "animegan_process_resident_memory_bytes", component="api", pid=str(api.process.pid)) > 20 * MiB
    assert value(a, "animegan_jobs_submitted_total") == 3
    assert value(a, "animegan_dedup_hits_total") == 1
    assert value(a, "animegan_upload_bytes_count") == 4
    assert value(a, "animegan_rejections_total", reason="unsupported") == 1
    assert value(a, "animegan_rejections_total", reason="too_large") == 1
    assert value(a, "animegan_rejections_total", reason="queue_full") == 0
    assert value(a, "animegan_http_requests_total", method="POST", route="/stylize", status="202") == 4
    assert value(a, "animegan_queue_depth", queue="animegan") == 0
    assert value(a, "animegan_queue_depth_limit") == 50
    assert value(a, "animegan_worker_processes") == 2
    assert value(a, "animegan_redis_up") == 1
    assert present(a, "animegan_redis_used_memory_bytes") > 100_000
    assert value(a, "animegan_process_disk_read_bytes_total", component="api") is not None
    assert value(a, "animegan_host_cpus") == psutil.cpu_count()

    # Worker: every live process, the jobs, the per-job figures; the stale run's 1000 jobs are gone.
    assert rss_processes(w) == expected_worker
    for component, pid in expected_worker:
        rss = value(w, "animegan_process_resident_memory_bytes", component=component, pid=str(pid))
        assert rss is not None
        assert abs(rss - psutil.Process(pid).memory_info().rss) < 0.25 * rss
    assert value(w, "animegan_jobs_total", style="hayao", outcome="succeeded") == 3
    assert value(w, "animegan_jobs_total", style="hayao", outcome="failed") == 0
    assert value(w, "animegan_jobs_total", style="hayao", outcome="timeout") == 0
    assert value(w, "animegan_jobs_running") == 0
    for histogram in ("animegan_queue_wait_seconds", "animegan_job_peak_rss_bytes"):
        assert value(w, f"{histogram}_count") == 3, histogram
    for histogram in ("animegan_inference_seconds", "animegan_job_duration_seconds"):
        assert value(w, f"{histogram}_count", style="hayao") == 3, histogram
    mean_peak = present(w, "animegan_job_peak_rss_bytes_sum") / 3
    assert 100 * MiB < mean_peak < 2048 * MiB
    assert value(w, "animegan_worker_max_memory_per_child_bytes") == 2048 * MiB
    assert present(w, "animegan_model_load_seconds") > 0
    precision = resolve_precision("auto")
    assert value(w, "animegan_worker_engine_info", precision=str(precision), runtime=precision.runtime) == 1
    for component in ("worker", "worker_main"):
        assert value(w, "animegan_process_disk_write_bytes_total", component=component) is not None
    assert value(w, "animegan_host_cpu_iowait_seconds_total") is not None

    # A pool child killed outright: its RSS series goes, its replacement appears, counts stay.
    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(pool_children(worker) - children) == 1, 120, "a replacement child")
    replacement = (pool_children(worker) - children).pop()
    wait_until(lambda: ("worker", replacement) in rss_processes(scrape(worker_url)[1]), 60, "the new child's RSS")
    text, after = scrape(worker_url)
    promtool_check(text)
    assert ("worker", victim) not in rss_processes(after)
    assert value(after, "animegan_jobs_total", style="hayao", outcome="succeeded") == 3
    assert value(after, "animegan_job_peak_rss_bytes_count") == 3


def test_queue_depth_counts_waiting_jobs_the_same_way_admission_and_readyz_do(
    redis_url: str, start_api: Any, photo: Callable[[], bytes]
) -> None:
    # No worker listens on this database: every accepted job stays waiting.
    base = start_api(redis_url=redis_url, max_queue_depth=3)
    for _ in range(3):
        assert submit(base, photo()).status_code == 202
    # Stray messages (a duplicate delivery, a re-sent token) are not jobs: they do not count.
    celery = create_celery_client(ApiSettings(redis_url=redis_url))
    for priority in (5, 9):
        celery.send_task(TASK_NAME, args=["no-such-job"], queue=QUEUE_NAME, priority=priority)
    celery.close()
    text, samples = scrape(f"{base}/metrics")
    promtool_check(text)  # this process is not in multiprocess mode: the default registry is served
    assert value(samples, "animegan_queue_depth", queue="animegan") == 3
    refused = submit(base, photo())
    assert refused.status_code == 503
    assert refused.json()["queue_depth"] == 3
    assert value(samples, "animegan_worker_processes") == 0
    assert value(samples, "animegan_redis_up") == 1


def test_scrape_survives_redis_down_and_says_so(start_api: Any) -> None:
    base = start_api(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    text, samples = scrape(f"{base}/metrics")
    promtool_check(text)
    assert value(samples, "animegan_redis_up") == 0
    assert not series(samples, "animegan_queue_depth")
    assert value(samples, "animegan_queue_depth_limit") == 50


def test_a_running_job_is_counted_and_its_peak_rss_is_at_least_what_was_seen_from_outside(
    tmp_path: Path, redis_url: str, spawn_worker: Any, start_api: Any
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    worker = spawn_worker(redis_url, ANIMEGAN_METRICS_PORT=str(port), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    worker_url = f"http://127.0.0.1:{port}/metrics"
    (child,) = pool_children(worker)
    # A 512 x 512 photo: a job of seconds, long enough to be seen running.
    base = start_api(redis_url=redis_url, max_side=512)

    seen_rss = 0
    stop = threading.Event()

    def watch_rss() -> None:
        nonlocal seen_rss
        while not stop.is_set():
            seen_rss = max(seen_rss, psutil.Process(child).memory_info().rss)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_rss, daemon=True)
    watcher.start()
    try:
        job_id = submit(base, (SAMPLES / "astronaut.jpg").read_bytes()).json()["id"]
        running = wait_until(lambda: value(scrape(worker_url)[1], "animegan_jobs_running") == 1, 60, "running 1")
        assert running
        assert wait_finished(base, job_id)["status"] == "succeeded"
    finally:
        stop.set()
        watcher.join()

    text, samples = scrape(worker_url)
    promtool_check(text)
    assert value(samples, "animegan_jobs_running") == 0
    assert value(samples, "animegan_job_peak_rss_bytes_count") == 1
    peak = value(samples, "animegan_job_peak_rss_bytes_sum")
    assert peak is not None
    # The kernel's peak for the job is at least every RSS sampled from outside while it ran, and
    # not the all-time peak of the child: close to what was seen.
    print(f"job peak RSS {peak / MiB:.1f} MiB; highest RSS sampled from outside {seen_rss / MiB:.1f} MiB")
    assert seen_rss - 4 * MiB <= peak < seen_rss + 64 * MiB, (seen_rss, peak)


def test_animegan_worker_makes_a_private_metrics_directory_when_none_is_given(
    redis_url: str, service_env: Callable[..., dict[str, str]]
) -> None:
    # The launcher, not the bare celery command: with a metrics port and no PROMETHEUS_MULTIPROC_DIR
    # the pool children's series would be lost, so it makes an in-memory directory for its life.
    port = free_port()
    env = service_env(
        ANIMEGAN_REDIS_URL=redis_url,
        ANIMEGAN_METRICS_PORT=str(port),
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "animegan.serve", "worker", "--concurrency", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    directory = Path(f"/dev/shm/animegan-metrics-{worker.pid}")
    try:

        def child_reported() -> bool:
            try:
                samples = scrape(f"http://127.0.0.1:{port}/metrics")[1]
            except httpx.HTTPError:
                return False
            return any(component == "worker" for component, _ in rss_processes(samples))

        assert worker.poll() is None
        wait_until(child_reported, 120, "the pool child's RSS on the worker's port")
        assert directory.is_dir()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    assert not directory.exists()
