"""A whole worker lost (a node crash, a container OOM-killed as a whole, a deleted pod), and time limits.

Real processes throughout: the production worker and API commands, a real Redis. With default
lease settings (20 s lease, 5 s sweeps) the job of a vanished worker is back in line within about
25 s and runs on another worker; its result is still written once. A child stuck so that it cannot
even take the soft time limit is killed by the hard limit, and its job ends ``inference-timeout`` at
once, from the worker's main process.

Photos, submitting and polling come from tests/e2e/conftest.py (``photo_of``, ``jobs``, ``pool``);
result writes are counted as in test_faults_delivery.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import pytest

from jobstore.records import ErrorCode, JobState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

# One thread in fp32: a job lasts long enough to be hit.
ONE_THREAD = {"ANIMEGAN_THREADS": "1", "ANIMEGAN_PRECISION": "fp32"}


def _holder_pid(record: Any) -> int:
    return int(str(record.holder).rsplit(":", 1)[1])


def test_a_job_whose_whole_worker_died_succeeds_on_another_within_a_minute(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
    jobs: Any,
    pool: Any,
    result_writes: Any,
) -> None:
    workers = [spawn_worker(redis_url, **ONE_THREAD) for _ in range(2)]
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1024")
    job_id = jobs.submit(api.base, photo_of(1024))  # seconds of inference on one thread
    running = jobs.wait_running(redis_url, job_id)
    [victim] = [w for w in workers if _holder_pid(running) in pool.children(w)]
    [survivor] = [w for w in workers if w is not victim]
    pool.kill_worker(victim)  # main process and child at once: nobody records anything
    killed_at = time.monotonic()

    again = jobs.wait_running(redis_url, job_id, attempt=2, timeout_s=60)
    handed_back_s = time.monotonic() - killed_at
    print(f"\nwhole worker killed -> job running on the other worker after {handed_back_s:.1f} s")
    assert handed_back_s < 60
    assert _holder_pid(again) in pool.children(survivor)
    job, _ = jobs.follow(api.base, job_id)

    assert job["status"] == "succeeded", job
    assert jobs.record(redis_url, job_id).attempts == 2
    assert result_writes.count(job_id) == 1
    assert jobs.stored(redis_url) == [job_id]
    assert httpx.get(f"{api.base}/jobs/{job_id}/result").status_code == 200


def test_a_job_whose_only_worker_died_runs_when_a_worker_comes_back(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
    jobs: Any,
    pool: Any,
) -> None:
    worker = spawn_worker(redis_url, **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1024")
    job_id = jobs.submit(api.base, photo_of(1024))
    jobs.wait_running(redis_url, job_id)
    pool.kill_worker(worker)
    time.sleep(30)  # the lease passes with nobody left to notice
    assert jobs.record(redis_url, job_id).state is JobState.RUNNING  # reads never write
    assert httpx.get(f"{api.base}/jobs/{job_id}").json()["status"] == "running"

    spawn_worker(redis_url, **ONE_THREAD)
    job, _ = jobs.follow(api.base, job_id)

    assert job["status"] == "succeeded", job
    assert jobs.record(redis_url, job_id).attempts == 2  # handed back by the new worker's sweeper, then run


def test_a_child_past_the_hard_time_limit_is_killed_and_its_job_ends_at_once(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_api: Callable[..., Any],
    photo_of: Callable[[int], bytes],
    jobs: Any,
    pool: Any,
) -> None:
    limits = {"ANIMEGAN_TASK_SOFT_TIME_LIMIT_S": "3", "ANIMEGAN_TASK_TIME_LIMIT_S": "6"}
    worker = spawn_worker(redis_url, ANIMEGAN_VISIBILITY_TIMEOUT_S="60", **limits, **ONE_THREAD)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1024")
    job_id = jobs.submit(api.base, photo_of(1024))
    running = jobs.wait_running(redis_url, job_id)
    [child] = pool.children(worker)
    # A stopped child cannot take the soft limit's signal: only the hard limit (SIGKILL) ends it.
    os.kill(child, signal.SIGSTOP)

    job, _ = jobs.follow(api.base, job_id, timeout_s=60)
    ended = jobs.record(redis_url, job_id)

    assert job["status"] == "failed"
    assert job["error"]["type"] == "/problems/inference-timeout"
    assert "6 s" in job["error"]["detail"]
    assert ended.error_code is ErrorCode.INFERENCE_TIMEOUT
    assert ended.finished_at is not None
    assert ended.finished_at - (running.started_at or 0) < 6 + 5  # at the hard limit, not a lease later
    assert ended.attempts == 1
    deadline = time.monotonic() + 60
    while child in pool.children(worker):  # the killed child is replaced
        assert time.monotonic() < deadline, "the stopped child was not replaced"
        time.sleep(0.2)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    fresh = jobs.submit(api.base, photo_of(192))
    assert jobs.follow(api.base, fresh)[0]["status"] == "succeeded"
