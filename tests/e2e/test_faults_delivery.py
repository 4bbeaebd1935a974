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
- a job past its time limit and a job whose input expired both end failed.

A whole worker lost (main process and children at once) is in test_faults_machines.py.

Result writes are counted with Redis keyspace notifications (``result_writes``, tests/e2e/conftest.py).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from PIL import Image

from animegan.serve import worker_command
from jobstore.keys import result_key
from jobstore.records import ErrorCode, JobState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
# One thread in fp32: a job lasts long enough to be hit (these tests are about delivery; the
# default precision's own round trip is tested in tests/integration/test_api_worker.py).
ONE_THREAD = {"ANIMEGAN_THREADS": "1", "ANIMEGAN_PRECISION": "fp32"}


def test_worker_child_killed_mid_inference_is_redelivered_and_succeeds_once(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
    result_writes: Any,
    jobs: Any,
    pool: Any,
) -> None:
    worker = spawn_worker(redis_url, **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1024")
    job_id = jobs.submit(api.base, photo_of(1024))  # about 8 s of inference on one thread
    jobs.wait_running(redis_url, job_id)
    [victim] = pool.children(worker)
    time.sleep(1.0)  # well inside the inference
    with redis.Redis.from_url(redis_url) as client:
        assert client.exists(result_key(job_id)) == 0
    os.kill(victim, signal.SIGKILL)

    job, seen = jobs.follow(api.base, job_id)

    assert job["status"] == "succeeded", job
    assert "failed" not in seen
    assert jobs.record(redis_url, job_id).attempts == 2  # the killed delivery, then the one that finished
    assert result_writes.count(job_id) == 1
    result = httpx.get(f"{api.base}/jobs/{job_id}/result")
    assert result.status_code == 200
    with Image.open(io.BytesIO(result.content)) as out:
        assert out.size == (1024, 768)
    assert jobs.stored(redis_url) == [job_id]  # the client sees one job
    assert pool.children(worker) != [victim]
    assert worker.poll() is None


def test_input_that_kills_its_worker_every_time_fails_after_max_attempts_and_the_queue_drains(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
    jobs: Any,
    pool: Any,
) -> None:
    worker = spawn_worker(redis_url, ANIMEGAN_MAX_ATTEMPTS="3", **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1024")
    poison = jobs.submit(api.base, photo_of(1024))
    behind = [jobs.submit(api.base, photo_of(192)) for _ in range(2)]
    kills = 0
    deadline = time.monotonic() + 300
    # The OOM killer's part: whichever pool child runs this input dies while running it.
    while not (record := jobs.record(redis_url, poison)).state.terminal:
        if record.state is JobState.RUNNING and record.attempts > kills:
            pool.kill_child(worker)
            kills += 1
        assert time.monotonic() < deadline, f"poison job still {record.state} after {kills} kills"
        time.sleep(0.05)

    assert kills == 3
    assert (record.state, record.error_code) == (JobState.FAILED, ErrorCode.WORKER_LOST)
    assert record.attempts == 3  # three runs killed their child; the third loss ended the job
    job = jobs.get(api.base, poison)
    assert job["error"]["type"] == "/problems/worker-lost"
    assert "3 times" in job["error"]["detail"]
    for job_id in behind:
        assert jobs.follow(api.base, job_id)[0]["status"] == "succeeded"
    assert worker.poll() is None


def test_sigterm_under_load_finishes_the_running_job_and_loses_nothing(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
    jobs: Any,
) -> None:
    first = spawn_worker(redis_url, **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="512")
    job_ids = [jobs.submit(api.base, photo_of(512)) for _ in range(5)]  # a few seconds each
    running = jobs.wait_running(redis_url, job_ids[0])
    assert running.id == job_ids[0]

    first.send_signal(signal.SIGTERM)  # what `docker stop` and Kubernetes send
    assert first.wait(120) == 0  # warm shutdown: it finished its job, then left

    assert jobs.record(redis_url, job_ids[0]).state is JobState.SUCCEEDED
    assert httpx.get(f"{api.base}/readyz").status_code == 503  # its heartbeat left with it
    waiting = [jobs.record(redis_url, job_id) for job_id in job_ids[1:]]
    assert all(r.state in (JobState.QUEUED, JobState.SUCCEEDED) for r in waiting), waiting

    spawn_worker(redis_url, **ONE_THREAD)
    for job_id in job_ids:
        assert jobs.follow(api.base, job_id)[0]["status"] == "succeeded"
        assert jobs.record(redis_url, job_id).attempts == 1  # nothing ran twice


def test_a_redelivery_while_the_job_runs_does_not_run_it_twice(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
    result_writes: Any,
    tmp_path: Path,
    jobs: Any,
) -> None:
    spawn_worker(redis_url, **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1536")
    job_id = jobs.submit(api.base, photo_of(1536))  # well over ten seconds on one thread
    running = jobs.wait_running(redis_url, job_id)
    # By the time the second worker below looks, the message has been unacknowledged for over 4 s.
    time.sleep(max(0.0, (running.started_at or 0) + 4.5 - time.time()))
    # A second worker whose broker visibility timeout is 4 s (time limits set to fit it). When it
    # starts it hands back to the queue every message unacknowledged for longer, the running job's
    # too, and then receives that message itself: the duplicate delivery of Celery's Redis caveat.
    log = tmp_path / "second-worker.log"
    short = {"ANIMEGAN_VISIBILITY_TIMEOUT_S": "4", "ANIMEGAN_TASK_SOFT_TIME_LIMIT_S": "1"}
    spawn_worker(redis_url, log=log, ANIMEGAN_TASK_TIME_LIMIT_S="2", **short, **ONE_THREAD)
    deadline = time.monotonic() + 120
    while "no waiting job for this message" not in log.read_text(errors="replace"):
        assert jobs.record(redis_url, job_id).state is JobState.RUNNING, "the job ended before the redelivery"
        assert time.monotonic() < deadline, "the message was not redelivered"
        time.sleep(0.1)

    job, seen = jobs.follow(api.base, job_id)

    assert job["status"] == "succeeded", job
    assert seen[-2:] == ["running", "succeeded"]
    assert jobs.record(redis_url, job_id).attempts == 1
    assert result_writes.count(job_id) == 1


def test_a_worker_whose_time_limit_does_not_fit_the_visibility_timeout_refuses_to_start(
    redis_url: str, service_env: Callable[..., dict[str, str]]
) -> None:
    limits = {"ANIMEGAN_VISIBILITY_TIMEOUT_S": "600", "ANIMEGAN_TASK_TIME_LIMIT_S": "330"}
    env = service_env(ANIMEGAN_REDIS_URL=redis_url, **limits)
    done = subprocess.run(worker_command(), env=env, cwd=ROOT, capture_output=True, timeout=120, check=False)
    assert done.returncode != 0
    assert b"ANIMEGAN_VISIBILITY_TIMEOUT_S" not in done.stdout  # one line on stderr, not a traceback
    assert b"visibility_timeout_s must be at least twice task_time_limit_s" in done.stderr


def test_a_job_over_its_time_limits_and_a_job_whose_input_expired_both_end_failed(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
    jobs: Any,
) -> None:
    short_lived = spawn_api(redis_url, ANIMEGAN_INPUT_TTL_S="1")
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="2048")
    expired = jobs.submit(short_lived.base, photo_of(192))
    time.sleep(1.5)  # no worker yet: the first input expires in Redis
    slow = jobs.submit(api.base, photo_of(2048))  # tens of seconds of inference
    spawn_worker(redis_url, ANIMEGAN_TASK_SOFT_TIME_LIMIT_S="1", ANIMEGAN_TASK_TIME_LIMIT_S="2", **ONE_THREAD)

    expired_job, _ = jobs.follow(api.base, expired)
    slow_job, _ = jobs.follow(api.base, slow)

    assert expired_job["status"] == "failed"
    assert expired_job["error"]["type"] == "/problems/input-expired"
    assert slow_job["status"] == "failed"
    assert slow_job["error"]["type"] == "/problems/inference-timeout"
