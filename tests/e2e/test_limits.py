"""Limits, measured on the real processes: the gateway under an upload storm, worker children's memory
ceiling, task count and threads, security headers, and no pickle on the queue.

The storm test prints the gateway's peak RSS (run with ``-s`` to see it); it must stay inside the
API container's default memory limit (512 MiB in docker-compose.yml).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import redis
from PIL import Image

from api.config import ApiSettings
from api.jobs.sender import create_celery_client
from jobstore.heartbeats import Heartbeat, live_heartbeats
from jobstore.keys import QUEUE_NAME, TASK_NAME, WORKERS_KEY, job_key
from jobstore.records import JobRecord, JobState
from worker.celery_app import create_celery
from worker.config import WorkerSettings, available_cores

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20
API_CONTAINER_LIMIT = 512 * MiB
STORM_UPLOADS = 50


def _storm_upload(size: int) -> Callable[[int], bytes]:
    """``make(i)``: a valid JPEG of exactly ``size`` bytes, different bytes (same pixels) for each i."""
    rng = np.random.default_rng(7)
    noise = Image.fromarray(rng.integers(0, 256, (1200, 1400, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    assert len(jpeg) < size - 200, len(jpeg)

    def make(i: int) -> bytes:
        # COM segments after SOI (each at most 65,533 bytes of text) pad the file to the size.
        pad, tag = size - len(jpeg), f"upload {i}|".encode()
        segments = []
        while pad > 0:
            body = (tag + b"." * 65533)[: min(65533, pad - 4)]
            segments.append(b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body)
            pad -= len(body) + 4
        data = jpeg[:2] + b"".join(segments) + jpeg[2:]
        assert len(data) == size
        return data

    return make


class RssSampler:
    """Samples a process's resident memory every 20 ms from a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.baseline = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_gateway_memory_stays_bounded_under_50_concurrent_5_mib_uploads(
    redis_url: str, spawn_api: Callable[..., Any]
) -> None:
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1024")
    limit = ApiSettings().max_upload_bytes
    make = _storm_upload(limit - 1024)
    uploads = [make(i) for i in range(STORM_UPLOADS)]
    httpx.get(f"{api.base}/readyz")  # warm: imports and connections exist before the baseline

    def send(data: bytes) -> httpx.Response:
        return httpx.post(f"{api.base}/stylize", files={"image": ("p.jpg", data, "image/jpeg")}, timeout=120)

    with RssSampler(api.process.pid) as rss, ThreadPoolExecutor(STORM_UPLOADS) as pool:
        responses = list(pool.map(send, uploads))
        after = rss.process.memory_info().rss

    statuses = sorted({r.status_code for r in responses})
    print(
        f"\ngateway RSS, {STORM_UPLOADS} concurrent uploads of {len(uploads[0]):,} bytes: "
        f"baseline {rss.baseline / MiB:.0f} MiB, peak {rss.peak / MiB:.0f} MiB, after {after / MiB:.0f} MiB; "
        f"statuses {statuses}"
    )
    assert set(statuses) <= {202, 503}, [r.text for r in responses if r.status_code not in (202, 503)][:3]
    # The storm is served, not refused wholesale: uploads that got a slot in time are accepted.
    assert 202 in statuses
    for response in responses:
        if response.status_code == 503:  # waited longer than the upload timeout for a slot
            assert response.json()["type"] == "/problems/too-many-uploads"
    assert rss.peak < API_CONTAINER_LIMIT
    assert httpx.get(f"{api.base}/healthz").status_code == 200


# -- worker children -----------------------------------------------------------------------------


@pytest.fixture
def run_jobs(queue_job: Callable[..., JobRecord]) -> Callable[..., list[JobRecord]]:
    """``run_jobs(redis_url, count, size=(192, 128))``: queue and send jobs one at a time, each to success."""

    def run(url: str, count: int, size: tuple[int, int] = (192, 128)) -> list[JobRecord]:
        return _run_jobs(queue_job, url, count, size)

    return run


def _run_jobs(queue_job: Callable[..., JobRecord], url: str, count: int, size: tuple[int, int]) -> list[JobRecord]:
    sender = create_celery_client(ApiSettings(redis_url=url))
    done = []
    with redis.Redis.from_url(url) as client:
        for i in range(count):
            record = queue_job(client, Image.new("RGB", size, (i * 40 % 256, 90, 160)), ttl_s=300)
            sender.send_task(TASK_NAME, args=[record.id], queue=QUEUE_NAME)
            deadline = time.monotonic() + 120
            while not (current := JobRecord.from_hash(client.hgetall(job_key(record.id)))).state.terminal:  # type: ignore[arg-type]
                assert time.monotonic() < deadline, "job did not finish"
                time.sleep(0.05)
            assert current.state is JobState.SUCCEEDED, current
            done.append(current)
    sender.close()
    return done


def test_a_child_under_the_memory_ceiling_serves_job_after_job(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    run_jobs: Callable[..., list[JobRecord]],
    pool: Any,
) -> None:
    worker = spawn_worker(redis_url)  # the default ceiling, ANIMEGAN_MAX_MEMORY_PER_CHILD_MB
    [child] = pool.children(worker)
    run_jobs(redis_url, 4, size=(512, 384))
    assert pool.children(worker) == [child]  # never recycled: the ceiling sits above a working child
    working_rss = psutil.Process(child).memory_info().rss
    ceiling = WorkerSettings().max_memory_per_child_mb * MiB
    print(f"\nchild RSS after 4 jobs: {working_rss / MiB:.0f} MiB; ceiling {ceiling / MiB:.0f} MiB")
    assert ceiling > 4 * working_rss


def test_a_child_over_the_memory_ceiling_is_replaced_after_its_job_and_the_next_child_serves(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    run_jobs: Callable[..., list[JobRecord]],
    pool: Any,
) -> None:
    worker = spawn_worker(redis_url, ANIMEGAN_MAX_MEMORY_PER_CHILD_MB="64")  # below a loaded child
    seen = set(pool.children(worker))
    for _ in range(2):
        run_jobs(redis_url, 1)
        deadline = time.monotonic() + 120
        while set(pool.children(worker)) <= seen:
            assert time.monotonic() < deadline, "the child over the ceiling was not replaced"
            time.sleep(0.05)
        seen |= set(pool.children(worker))
    assert len(seen) == 3
    assert worker.poll() is None


def test_max_tasks_per_child_replaces_a_child_after_that_many_jobs(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    run_jobs: Callable[..., list[JobRecord]],
    pool: Any,
) -> None:
    worker = spawn_worker(redis_url, ANIMEGAN_MAX_TASKS_PER_CHILD="2")
    [first] = pool.children(worker)
    run_jobs(redis_url, 1)
    assert pool.children(worker) == [first]
    run_jobs(redis_url, 1)
    deadline = time.monotonic() + 120
    while pool.children(worker) == [first]:
        assert time.monotonic() < deadline, "the child was not replaced after 2 jobs"
        time.sleep(0.05)
    run_jobs(redis_url, 2)  # the new child loads the model and serves


def _heartbeats(url: str) -> list[Heartbeat]:
    with redis.Redis.from_url(url) as client:
        return live_heartbeats(client.hgetall(WORKERS_KEY))  # type: ignore[arg-type]


def _band_threads(pid: int) -> int:
    """How many of a process's threads are the engine's band threads (by the name they give themselves)."""
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):
            names.append(Path(f"/proc/{pid}/task/{task}/comm").read_text().strip())
    return names.count("animegan-band")


@pytest.mark.parametrize("concurrency", [2, 1])
def test_each_child_runs_the_engine_with_cores_divided_by_children_threads(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    run_jobs: Callable[..., Any],
    concurrency: int,
    pool: Any,
) -> None:
    threads = max(1, available_cores() // concurrency)  # whatever the machine's core count
    worker = spawn_worker(redis_url, ANIMEGAN_WORKER_CONCURRENCY=str(concurrency), ANIMEGAN_PIN_CPUS="false")
    children = pool.children(worker, concurrency)
    deadline = time.monotonic() + 120
    while len(beats := _heartbeats(redis_url)) < concurrency:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert {b.pid for b in beats} == set(children)
    assert all(b.threads == threads for b in beats)  # the value each child gave its engine
    # Inside the child: the engine runs a layer's bands on the calling thread and a pool of exactly
    # threads - 1 native threads (named animegan-band), made when the engine loads; jobs add none.
    run_jobs(redis_url, 2 * concurrency, size=(256, 192))
    assert {pid: _band_threads(pid) for pid in children} == dict.fromkeys(children, threads - 1)


# -- headers and serialisation --------------------------------------------------------------------


def test_html_responses_carry_security_headers_and_every_response_nosniff(
    start_api: Callable[..., str], redis_url: str
) -> None:
    base = start_api(redis_url=redis_url)
    for path in ("/", "/docs", "/redoc"):
        response = httpx.get(f"{base}{path}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "object-src 'none'" in csp
    assert "default-src 'self'" in httpx.get(f"{base}/").headers["content-security-policy"]
    for path in ("/healthz", "/styles", "/jobs/nope", "/openapi.json", "/static/app.js"):
        assert httpx.get(f"{base}{path}").headers["x-content-type-options"] == "nosniff", path


class _Trap:
    """Unpickling this creates ``path``: proof that a worker deserialised a pickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


def test_a_pickled_task_message_is_rejected_unopened_and_the_worker_goes_on(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    run_jobs: Callable[..., list[JobRecord]],
    queue_job: Callable[..., JobRecord],
) -> None:
    log = tmp_path / "worker.log"
    worker = spawn_worker(redis_url, log=log)
    trap = tmp_path / "unpickled"
    with redis.Redis.from_url(redis_url) as client:
        job = queue_job(client, Image.new("RGB", (64, 48), (1, 2, 3)), ttl_s=300)
    # A producer that speaks pickle, as an attacker with access to the broker would.
    evil = create_celery_client(ApiSettings(redis_url=redis_url))
    evil.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    evil.send_task(TASK_NAME, args=[job.id, _Trap(str(trap))], queue=QUEUE_NAME)
    evil.close()
    deadline = time.monotonic() + 60
    while "disallowed" not in (text := log.read_text(errors="replace")).lower():
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.1)
    assert "Refusing to deserialize untrusted content of type pickle" in text

    assert not trap.exists()  # never unpickled
    with redis.Redis.from_url(redis_url) as client:
        assert JobRecord.from_hash(client.hgetall(job_key(job.id))).state is JobState.QUEUED  # type: ignore[arg-type]
        assert client.llen(QUEUE_NAME) == 0  # dropped, not requeued in a loop
    run_jobs(redis_url, 1)  # the worker still serves JSON tasks
    assert worker.poll() is None


def test_nothing_on_the_queue_path_speaks_pickle() -> None:
    worker_app = create_celery(WorkerSettings(redis_url="redis://127.0.0.1:1/0"))
    api_client = create_celery_client(ApiSettings(redis_url="redis://127.0.0.1:1/0"))
    for conf in (worker_app.conf, api_client.conf):
        assert list(conf.accept_content) == ["json"]
        assert conf.task_serializer == "json"
        assert conf.event_serializer == "json"
    assert worker_app.conf.result_backend is None  # no result messages at all
    # The one pickle reader is the weights loader's restricted unpickler (tensors only, digest-checked files).
    users = sorted(
        str(path.relative_to(ROOT))
        for package in ("api", "worker", "jobstore", "telemetry", "inference", "animegan", "loadtest")
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle)\b", path.read_text(), re.MULTILINE)
    )
    assert users == ["inference/weights.py"]
