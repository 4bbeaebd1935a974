"""The guards behind "exactly once from the client's view", against a real Redis, without processes.

A delivery claims a job atomically; a duplicate delivery of a running job is dropped; a job whose
pool child died is queued again; a job running past its deadline is ended as worker-lost by the
next reader (the gateway) or the next delivery. The process-level faults are in
tests/e2e/test_faults_delivery.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from PIL import Image

from jobstore.clock import now
from jobstore.deadlines import STALE_DETAIL, running_deadline
from jobstore.errors import ErrorCode
from jobstore.keys import QUEUED_KEY, job_key
from jobstore.records import JobRecord
from jobstore.states import JobState
from jobstore.transitions import add_mark_failed
from worker.config import WorkerSettings
from worker.runtime import Runtime
from worker.tasks import claim, requeue_job_id, run_job


@pytest.fixture
def runtime(redis_url: str) -> Iterator[Runtime]:
    settings = WorkerSettings(redis_url=redis_url, styles=["hayao"], default_style="hayao", worker_concurrency=1)
    runtime = Runtime(settings)
    yield runtime
    runtime.redis.close()


# 8 x 6 mid-grey pixels: small enough that no test here needs the model.
QUEUED_PIXELS = Image.new("RGB", (8, 6), (128, 128, 128))


def _read(client: redis.Redis, job_id: str) -> JobRecord:
    return JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]


def test_a_claim_marks_the_job_running_with_a_deadline_from_the_hard_time_limit(
    runtime: Runtime, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, QUEUED_PIXELS, age_s=10)
    claimed = claim(runtime, record.id)
    assert isinstance(claimed, JobRecord)
    stored = _read(runtime.redis, record.id)
    assert stored.state is JobState.RUNNING
    assert stored.attempts == claimed.attempts == 1
    assert stored.started_at is not None
    assert stored.deadline_at == pytest.approx(running_deadline(stored.started_at, runtime.settings.task_time_limit_s))
    assert runtime.redis.zrank(QUEUED_KEY, record.id) is None


def test_a_second_delivery_of_a_running_job_is_dropped_without_running(
    runtime: Runtime, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, QUEUED_PIXELS, age_s=10)
    assert isinstance(claim(runtime, record.id), JobRecord)
    assert run_job(runtime, record.id) == "skipped"
    stored = _read(runtime.redis, record.id)
    assert (stored.state, stored.attempts) == (JobState.RUNNING, 1)


def test_a_job_whose_child_died_is_queued_again_in_its_old_place_and_claimed_again(
    runtime: Runtime, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, QUEUED_PIXELS, age_s=10)
    later = queue_job(runtime.redis, QUEUED_PIXELS, age_s=10)
    claim(runtime, record.id)
    requeue_job_id(runtime, record.id)  # what the main worker process does on WorkerLostError
    stored = _read(runtime.redis, record.id)
    assert (stored.state, stored.deadline_at, stored.attempts) == (JobState.QUEUED, None, 1)
    assert runtime.redis.zrank(QUEUED_KEY, record.id) == 0  # ahead of the later job
    assert runtime.redis.zrank(QUEUED_KEY, later.id) == 1
    claimed = claim(runtime, record.id)
    assert isinstance(claimed, JobRecord)
    assert claimed.attempts == 2


def test_requeue_leaves_a_finished_job_alone(runtime: Runtime, queue_job: Callable[..., JobRecord]) -> None:
    record = queue_job(runtime.redis, QUEUED_PIXELS, age_s=10)
    pipe = runtime.redis.pipeline()
    add_mark_failed(pipe, record, ErrorCode.INVALID_IMAGE, "bad")
    pipe.execute()
    requeue_job_id(runtime, record.id)
    assert _read(runtime.redis, record.id).state is JobState.FAILED


def _make_stale(client: redis.Redis, job_id: str) -> None:
    client.hset(job_key(job_id), "deadline_at", str(now() - 1))


def test_a_delivery_of_a_job_past_its_deadline_ends_it_as_worker_lost(
    runtime: Runtime, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, QUEUED_PIXELS, age_s=10)
    claim(runtime, record.id)
    _make_stale(runtime.redis, record.id)
    assert run_job(runtime, record.id) == "failed"
    stored = _read(runtime.redis, record.id)
    assert (stored.state, stored.error_code) == (JobState.FAILED, ErrorCode.WORKER_LOST)
    assert stored.error_detail == STALE_DETAIL


def test_the_gateway_ends_a_job_it_finds_running_past_its_deadline(
    runtime: Runtime, start_api: Callable[..., str], redis_url: str, queue_job: Callable[..., JobRecord]
) -> None:
    base = start_api(redis_url=redis_url)
    fresh, stale = queue_job(runtime.redis, QUEUED_PIXELS, age_s=10), queue_job(runtime.redis, QUEUED_PIXELS, age_s=10)
    claim(runtime, fresh.id)
    claim(runtime, stale.id)
    _make_stale(runtime.redis, stale.id)
    assert httpx.get(f"{base}/jobs/{fresh.id}").json()["status"] == "running"
    job = httpx.get(f"{base}/jobs/{stale.id}").json()
    assert job["status"] == "failed"
    assert job["error"]["type"] == "/problems/worker-lost"
    assert _read(runtime.redis, stale.id).state is JobState.FAILED  # stored, not only shown
    result = httpx.get(f"{base}/jobs/{stale.id}/result")
    assert result.status_code == 409
    assert result.json()["type"] == "/problems/job-failed"
