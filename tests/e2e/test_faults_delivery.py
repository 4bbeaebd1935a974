"""Faults injected into real processes: the delivery guarantees hold when workers die or misbehave.

Every test runs the production commands: a real Redis, the Celery worker command (prefork, one
child, the real hayao weights, one inference thread so a job lasts long enough to be hit), and the
API command (uvicorn) as a process of its own. Faults are real signals to real processes:

- SIGKILL a pool child mid-inference: the job is redelivered and succeeds, its result is written
  once, the client sees one job;
- a job whose child is killed every time it runs it (what the kernel's OOM killer does to an
  input too large for the container): ``failed`` with ``worker-lost`` after
  ANIMEGAN_MAX_ATTEMPTS, and the jobs behind it still run;
- SIGTERM a worker with jobs queued: the running job finishes, nothing waiting is lost;
- a second delivery of a running job (a broker visibility timeout that passed mid-job): the job
  is not run twice;
- the whole worker killed: the job still reaches a terminal state once its deadline has passed;
  so do a job past its time limit and a job whose input expired.

Result writes are counted with Redis keyspace notifications: a SET NX that does not set anything
sends none, so the count is the number of times the stored result changed.
"""

from __future__ import annotations

import io
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import redis
from PIL import Image

from animegan.serve import worker_command
from worker import contract
from worker.contract import ErrorCode, JobRecord, JobState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
ONE_THREAD = {"ANIMEGAN_THREADS": "1"}
_variants = itertools.count(1)


@pytest.fixture(scope="module")
def base_photo(samples_dir: Path) -> Image.Image:
    with Image.open(samples_dir / "railway_crossing.jpg") as img:
        return img.convert("RGB")


@pytest.fixture
def photo_of(base_photo: Image.Image) -> Callable[[int], bytes]:
    """``photo_of(width)``: a real photo at that width (4:3), unique bytes and pixels on every call."""

    def make(width: int) -> bytes:
        n = next(_variants)
        image = base_photo.resize((width, width * 3 // 4))
        image.paste((n * 53 % 256, n * 97 % 256, n * 29 % 256), (0, 0, 16, 16))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        return buffer.getvalue()

    return make


def _submit(base: str, image: bytes) -> str:
    response = httpx.post(f"{base}/stylize", files={"image": ("p.jpg", image, "image/jpeg")}, timeout=60)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _job(base: str, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/jobs/{job_id}", timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _record(url: str, job_id: str) -> JobRecord:
    with redis.Redis.from_url(url) as client:
        return JobRecord.from_hash(client.hgetall(contract.job_key(job_id)))  # type: ignore[arg-type]


def _follow(base: str, job_id: str, timeout_s: float = 240.0) -> tuple[dict[str, Any], list[str]]:
    """Poll until the job ends; returns its last state and the distinct states seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        job = _job(base, job_id)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in ("succeeded", "failed"):
            return job, seen
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout_s} s"
        time.sleep(0.1)


def _wait_running(url: str, job_id: str, *, attempt: int = 1, timeout_s: float = 120.0) -> JobRecord:
    deadline = time.monotonic() + timeout_s
    while True:
        record = _record(url, job_id)
        if record.state is JobState.RUNNING and record.attempts >= attempt:
            return record
        assert not record.state.terminal, f"job ended {record.state} before it could be hit"
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.05)


def _pool_child(worker: subprocess.Popen[bytes], timeout_s: float = 120.0) -> int:
    """The pid of the worker's one pool child (waits while a replacement is being forked)."""
    deadline = time.monotonic() + timeout_s
    while True:
        children = psutil.Process(worker.pid).children()
        if len(children) == 1:
            return children[0].pid
        assert time.monotonic() < deadline, f"worker has {len(children)} pool children"
        time.sleep(0.05)


class ResultWrites:
    """Counts writes to result keys from Redis keyspace notifications (``set`` events)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.db = int(parts.path.strip("/") or 0)
        self.client = redis.Redis.from_url(url)
        self.events: list[str] = []
        self._stop = threading.Event()

    def __enter__(self) -> ResultWrites:
        self.client.config_set("notify-keyspace-events", "K$")
        self.pubsub = self.client.pubsub()
        self.pubsub.psubscribe(f"__keyspace@{self.db}__:{contract.result_key('*')}")
        self.pubsub.get_message(timeout=5)  # the subscription confirmation
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()
        return self

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage" and message["data"] == b"set":
                self.events.append(message["channel"].decode().rsplit(":", 1)[-1])

    def count(self, job_id: str) -> int:
        time.sleep(0.5)  # notifications are asynchronous: let the listener drain
        return self.events.count(job_id)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()
        self.client.config_set("notify-keyspace-events", "")
        self.client.close()


@pytest.fixture
def result_writes(redis_url: str) -> Iterator[ResultWrites]:
    with ResultWrites(redis_url) as writes:
        yield writes


def _job_keys(url: str) -> list[bytes]:
    with redis.Redis.from_url(url) as client:
        return list(client.scan_iter(contract.job_key("*")))


def test_worker_child_killed_mid_inference_is_redelivered_and_succeeds_once(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
    result_writes: ResultWrites,
) -> None:
    worker = spawn_worker(redis_url, **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1024")
    job_id = _submit(api.base, photo_of(1024))  # about 8 s of inference on one thread
    _wait_running(redis_url, job_id)
    victim = _pool_child(worker)
    time.sleep(1.0)  # well inside the inference
    with redis.Redis.from_url(redis_url) as client:
        assert client.exists(contract.result_key(job_id)) == 0
    os.kill(victim, signal.SIGKILL)

    job, seen = _follow(api.base, job_id)

    assert job["status"] == "succeeded", job
    assert "failed" not in seen
    assert _record(redis_url, job_id).attempts == 2  # the killed delivery, then the one that finished
    assert result_writes.count(job_id) == 1
    result = httpx.get(f"{api.base}/jobs/{job_id}/result")
    assert result.status_code == 200
    with Image.open(io.BytesIO(result.content)) as out:
        assert out.size == (1024, 768)
    assert _job_keys(redis_url) == [contract.job_key(job_id).encode()]  # the client sees one job
    assert _pool_child(worker) != victim
    assert worker.poll() is None


def test_input_that_kills_its_worker_every_time_fails_after_max_attempts_and_the_queue_drains(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
) -> None:
    worker = spawn_worker(redis_url, ANIMEGAN_MAX_ATTEMPTS="3", **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1024")
    poison = _submit(api.base, photo_of(1024))
    behind = [_submit(api.base, photo_of(192)) for _ in range(2)]
    kills = 0
    deadline = time.monotonic() + 300
    # The OOM killer's part: whichever pool child runs this input dies while running it.
    while not (record := _record(redis_url, poison)).state.terminal:
        if record.state is JobState.RUNNING and record.attempts > kills:
            os.kill(_pool_child(worker), signal.SIGKILL)
            kills += 1
        assert time.monotonic() < deadline, f"poison job still {record.state} after {kills} kills"
        time.sleep(0.05)

    assert kills == 3
    assert (record.state, record.error_code) == (JobState.FAILED, ErrorCode.WORKER_LOST)
    assert record.attempts == 3  # three runs killed their child; the fourth delivery ended the job unrun
    job = _job(api.base, poison)
    assert job["error"]["type"] == "/problems/worker-lost"
    assert "3 times" in job["error"]["detail"]
    for job_id in behind:
        assert _follow(api.base, job_id)[0]["status"] == "succeeded"
    assert worker.poll() is None


def test_sigterm_under_load_finishes_the_running_job_and_loses_nothing(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
) -> None:
    first = spawn_worker(redis_url, **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="512")
    jobs = [_submit(api.base, photo_of(512)) for _ in range(5)]  # a few seconds each
    running = _wait_running(redis_url, jobs[0])
    assert running.id == jobs[0]

    first.send_signal(signal.SIGTERM)  # what `docker stop` and Kubernetes send
    assert first.wait(120) == 0  # warm shutdown: it finished its job, then left

    assert _record(redis_url, jobs[0]).state is JobState.SUCCEEDED
    assert httpx.get(f"{api.base}/readyz").status_code == 503  # its heartbeat left with it
    waiting = [_record(redis_url, job_id) for job_id in jobs[1:]]
    assert all(r.state in (JobState.QUEUED, JobState.SUCCEEDED) for r in waiting), waiting

    spawn_worker(redis_url, **ONE_THREAD)
    for job_id in jobs:
        assert _follow(api.base, job_id)[0]["status"] == "succeeded"
        assert _record(redis_url, job_id).attempts == 1  # nothing ran twice


def test_a_redelivery_while_the_job_runs_does_not_run_it_twice(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
    result_writes: ResultWrites,
    tmp_path: Path,
) -> None:
    spawn_worker(redis_url, **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1536")
    job_id = _submit(api.base, photo_of(1536))  # well over ten seconds on one thread
    running = _wait_running(redis_url, job_id)
    # By the time the second worker below looks, the message has been unacknowledged for over 4 s.
    time.sleep(max(0.0, (running.started_at or 0) + 4.5 - time.time()))
    # A second worker whose broker visibility timeout is 4 s (time limits set to fit it). When it
    # starts it hands back to the queue every message unacknowledged for longer, the running job's
    # too, and then receives that message itself: the duplicate delivery of Celery's Redis caveat.
    log = tmp_path / "second-worker.log"
    short = {"ANIMEGAN_VISIBILITY_TIMEOUT_S": "4", "ANIMEGAN_TASK_SOFT_TIME_LIMIT_S": "1"}
    spawn_worker(redis_url, log=log, ANIMEGAN_TASK_TIME_LIMIT_S="2", **short, **ONE_THREAD)
    deadline = time.monotonic() + 120
    while "ignoring a duplicate delivery" not in log.read_text(errors="replace"):
        assert _record(redis_url, job_id).state is JobState.RUNNING, "the job ended before the redelivery"
        assert time.monotonic() < deadline, "the message was not redelivered"
        time.sleep(0.1)

    job, seen = _follow(api.base, job_id)

    assert job["status"] == "succeeded", job
    assert seen[-2:] == ["running", "succeeded"]
    assert _record(redis_url, job_id).attempts == 1
    assert result_writes.count(job_id) == 1


def test_a_worker_whose_time_limit_does_not_fit_the_visibility_timeout_refuses_to_start(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_")}
    env.update(ANIMEGAN_REDIS_URL=redis_url, ANIMEGAN_VISIBILITY_TIMEOUT_S="600", ANIMEGAN_TASK_TIME_LIMIT_S="330")
    done = subprocess.run(worker_command(), env=env, cwd=ROOT, capture_output=True, timeout=120, check=False)
    assert done.returncode != 0
    assert b"ANIMEGAN_VISIBILITY_TIMEOUT_S" not in done.stdout  # one line on stderr, not a traceback
    assert b"visibility_timeout_s must be at least twice task_time_limit_s" in done.stderr


def test_a_job_whose_whole_worker_was_killed_ends_failed_after_its_deadline(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
) -> None:
    limits = {"ANIMEGAN_TASK_SOFT_TIME_LIMIT_S": "10", "ANIMEGAN_TASK_TIME_LIMIT_S": "12"}
    worker = spawn_worker(redis_url, ANIMEGAN_VISIBILITY_TIMEOUT_S="24", **limits, **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1024")
    job_id = _submit(api.base, photo_of(1024))
    running = _wait_running(redis_url, job_id)
    os.killpg(worker.pid, signal.SIGKILL)  # main process and child at once: nobody records anything
    worker.wait(10)
    assert running.deadline_at is not None
    assert running.deadline_at == pytest.approx(contract.running_deadline(running.started_at or 0, 12))
    assert _record(redis_url, job_id).state is JobState.RUNNING

    job, _ = _follow(api.base, job_id, timeout_s=120)

    assert job["status"] == "failed"
    assert job["error"]["type"] == "/problems/worker-lost"
    assert time.time() >= running.deadline_at
    # Its message may come back after the visibility timeout; a delivery of a failed job is dropped unrun.
    spawn_worker(redis_url, ANIMEGAN_VISIBILITY_TIMEOUT_S="24", **limits)
    fresh = _submit(api.base, photo_of(192))
    assert _follow(api.base, fresh)[0]["status"] == "succeeded"
    assert _record(redis_url, job_id).state is JobState.FAILED


def test_a_job_over_its_time_limits_and_a_job_whose_input_expired_both_end_failed(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
) -> None:
    short_lived = spawn_api(redis_url, ANIMEGAN_INPUT_TTL_S="1")
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="2048")
    expired = _submit(short_lived.base, photo_of(192))
    time.sleep(1.5)  # no worker yet: the first input expires in Redis
    slow = _submit(api.base, photo_of(2048))  # tens of seconds of inference
    spawn_worker(redis_url, ANIMEGAN_TASK_SOFT_TIME_LIMIT_S="1", ANIMEGAN_TASK_TIME_LIMIT_S="2", **ONE_THREAD)

    expired_job, _ = _follow(api.base, expired)
    slow_job, _ = _follow(api.base, slow)

    assert expired_job["status"] == "failed"
    assert expired_job["error"]["type"] == "/problems/input-expired"
    assert slow_job["status"] == "failed"
    assert slow_job["error"]["type"] == "/problems/inference-timeout"
