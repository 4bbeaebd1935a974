"""Restarts of the parts that hold no job state of their own, and of the one that holds it all.

- Redis configured as documented for production (``appendonly yes``, ``appendfsync everysec``) is
  killed with SIGKILL and started again on the same files: every job accepted more than a second
  before the crash is still there and finishes, including the ones a worker had not taken yet;
  while Redis is down the API answers 503 problems, never a hang or a 500. Down for 10 s under a
  running job, the worker retries its writes and every job succeeds.
- The API process is killed with SIGKILL and started again: clients keep polling the same URLs,
  jobs go on in the workers meanwhile.

Photos, submitting and polling come from tests/e2e/conftest.py (``photo_of``, ``jobs``).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

PROBLEM = "application/problem+json"


def test_accepted_jobs_survive_a_redis_crash_with_aof(
    durable_redis: Any,
    spawn_api: Callable[..., Any],
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    photo_of: Callable[[int], bytes],
    jobs: Any,
) -> None:
    api = spawn_api(durable_redis.url, ANIMEGAN_MAX_SIDE="256")
    accepted = [jobs.submit(api.base, photo_of(256)) for _ in range(4)]
    time.sleep(2.0)  # appendfsync everysec: what was written more than a second ago is on disk

    durable_redis.kill()
    down = httpx.get(f"{api.base}/jobs/{accepted[0]}", timeout=30)
    assert down.status_code == 503
    assert down.headers["content-type"] == PROBLEM
    assert down.json()["type"] == "/problems/broker-unavailable"
    assert int(down.headers["retry-after"]) >= 1
    refused = httpx.post(f"{api.base}/stylize", files={"image": ("p.jpg", photo_of(256), "image/jpeg")}, timeout=30)
    assert refused.status_code == 503
    assert refused.headers["content-type"] == PROBLEM

    durable_redis.start()
    for job_id in accepted:
        response = httpx.get(f"{api.base}/jobs/{job_id}", timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
    spawn_worker(durable_redis.url)
    after = jobs.submit(api.base, photo_of(256))
    for job_id in [*accepted, after]:
        job = jobs.follow(api.base, job_id)[0]
        assert job["status"] == "succeeded", job
        assert httpx.get(f"{api.base}/jobs/{job_id}/result").status_code == 200


def test_jobs_running_and_queued_survive_redis_down_for_ten_seconds_under_a_live_worker(
    durable_redis: Any,
    spawn_api: Callable[..., Any],
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    photo_of: Callable[[int], bytes],
    jobs: Any,
) -> None:
    limits = {"ANIMEGAN_TASK_SOFT_TIME_LIMIT_S": "40", "ANIMEGAN_TASK_TIME_LIMIT_S": "45"}
    worker = spawn_worker(
        durable_redis.url,
        ANIMEGAN_THREADS="1",
        ANIMEGAN_PRECISION="fp32",
        ANIMEGAN_VISIBILITY_TIMEOUT_S="120",
        **limits,
    )
    api = spawn_api(durable_redis.url, ANIMEGAN_MAX_SIDE="768")
    accepted = [jobs.submit(api.base, photo_of(768)) for _ in range(3)]  # seconds each on one thread
    jobs.wait_running(durable_redis.url, accepted[0])
    time.sleep(2.0)  # appendfsync everysec: the accepted jobs are on disk
    durable_redis.kill()
    time.sleep(10.0)  # the running job finishes its inference meanwhile and retries its writes
    durable_redis.start()

    outcomes = {job_id: jobs.follow(api.base, job_id, timeout_s=300)[0] for job_id in accepted}

    assert [job["status"] for job in outcomes.values()] == ["succeeded"] * 3, outcomes
    for job_id in accepted:
        assert httpx.get(f"{api.base}/jobs/{job_id}/result").status_code == 200
    assert worker.poll() is None  # the worker reconnected instead of dying


def test_polling_continues_across_an_api_restart(
    redis_url: str,
    spawn_api: Callable[..., Any],
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    photo_of: Callable[[int], bytes],
    jobs: Any,
) -> None:
    spawn_worker(redis_url, ANIMEGAN_THREADS="1", ANIMEGAN_PRECISION="fp32")  # jobs of seconds: seen running
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="512")
    accepted = [jobs.submit(api.base, photo_of(512)) for _ in range(3)]

    api.kill()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{api.base}/jobs/{accepted[0]}", timeout=5)
    api.start()  # same port, a new process: it holds no state of its own

    for job_id in accepted:
        job = jobs.follow(api.base, job_id)[0]
        assert job["status"] == "succeeded", job
        result = httpx.get(f"{api.base}/jobs/{job_id}/result")
        assert result.status_code == 200
        assert result.headers["content-type"] == "image/png"
