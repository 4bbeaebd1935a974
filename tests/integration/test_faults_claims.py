"""The guards behind "exactly once from the client's view", against a real Redis, without processes.

A delivery claims the fairest waiting job and leases it; a message that finds no job is dropped
unrun; a job out of attempts fails instead of running; the sweeper hands back jobs whose lease
passed or whose holder died, fails what expired, and re-sends missing messages; reads never write.
The process-level faults are in tests/e2e/test_faults_delivery.py and test_faults_machines.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis
from PIL import Image

from jobstore.keys import LEASES_KEY, QUEUE_NAME, WAITING_KEY, input_key, job_key
from jobstore.records import ErrorCode, JobRecord, JobState, now
from worker import leases
from worker.config import WorkerSettings
from worker.runtime import Runtime
from worker.sweeper import Sweeper
from worker.tasks import claim, run_job

# 8 x 6 mid-grey pixels: small enough that no test here needs the model.
QUEUED_PIXELS = Image.new("RGB", (8, 6), (128, 128, 128))
WRITE_COMMANDS = {"hset", "hdel", "set", "del", "expire", "zadd", "zrem", "lpush", "rpush", "lrem", "sadd", "srem"}


@pytest.fixture
def runtime(redis_url: str) -> Iterator[Runtime]:
    settings = WorkerSettings(
        redis_url=redis_url, styles=["hayao"], default_style="hayao", worker_concurrency=1, lease_s=5.0
    )
    runtime = Runtime(settings)
    yield runtime
    runtime.redis.close()


@pytest.fixture
def tokens() -> list[str]:
    return []


@pytest.fixture
def sweeper(runtime: Runtime, tokens: list[str]) -> Sweeper:
    return Sweeper(runtime.redis, tokens.append, holder="host:main", interval_s=1.0, max_attempts=3)


def _read(client: redis.Redis, job_id: str) -> JobRecord:
    return JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]


def _expire_lease(client: redis.Redis, job_id: str) -> None:
    client.zadd(LEASES_KEY, {job_id: now() - 1})


def test_a_delivery_claims_the_fairest_job_not_the_one_its_message_names(
    runtime: Runtime, queue_job: Callable[..., JobRecord]
) -> None:
    flood = [queue_job(runtime.redis, QUEUED_PIXELS, owner="a") for _ in range(3)]
    other = queue_job(runtime.redis, QUEUED_PIXELS, owner="b")
    first, second = claim(runtime), claim(runtime)
    assert first is not None
    assert second is not None
    assert (first.id, second.id) == (flood[0].id, other.id)
    stored = _read(runtime.redis, second.id)
    assert (stored.state, stored.attempts, stored.holder) == (JobState.RUNNING, 1, runtime.worker_id)


def test_a_message_that_finds_no_waiting_job_is_dropped_unrun(
    runtime: Runtime, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, QUEUED_PIXELS)
    assert claim(runtime) is not None
    # The original message delivered again (visibility timeout), while the job runs elsewhere.
    assert run_job(runtime, record.id) == "skipped"
    stored = _read(runtime.redis, record.id)
    assert (stored.state, stored.attempts) == (JobState.RUNNING, 1)


def test_a_job_out_of_attempts_fails_as_worker_lost_without_running(
    runtime: Runtime, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, QUEUED_PIXELS)
    runtime.redis.hset(job_key(record.id), "attempts", "3")
    assert run_job(runtime, record.id) == "failed"
    stored = _read(runtime.redis, record.id)
    assert (stored.state, stored.error_code) == (JobState.FAILED, ErrorCode.WORKER_LOST)
    assert stored.error_detail == "The job stopped a worker 3 times and will not be retried."


def test_a_held_lease_is_renewed_while_the_job_runs(runtime: Runtime, queue_job: Callable[..., JobRecord]) -> None:
    queue_job(runtime.redis, QUEUED_PIXELS)
    record = claim(runtime)
    assert record is not None
    first = runtime.redis.zscore(LEASES_KEY, record.id)
    with leases.held(runtime.redis, runtime.scripts, record.id, runtime.worker_id, lease_s=1.0):
        time.sleep(1.5)
        renewed = runtime.redis.zscore(LEASES_KEY, record.id)
    assert first is not None
    assert renewed is not None
    assert renewed > now()
    assert renewed < first


def test_the_sweeper_requeues_an_expired_lease_and_sends_it_a_message(
    runtime: Runtime, sweeper: Sweeper, tokens: list[str], queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, QUEUED_PIXELS)
    claim(runtime)
    sweeper.sweep()
    assert _read(runtime.redis, record.id).state is JobState.RUNNING  # the lease has not passed
    _expire_lease(runtime.redis, record.id)
    assert sweeper.acquire()
    sweeper.sweep()
    stored = _read(runtime.redis, record.id)
    assert (stored.state, stored.attempts) == (JobState.QUEUED, 1)
    assert tokens == [record.id]
    again = claim(runtime)
    assert again is not None
    assert (again.id, again.attempts) == (record.id, 2)


def test_the_sweeper_fails_a_lost_job_that_used_its_attempts(
    runtime: Runtime, sweeper: Sweeper, tokens: list[str], queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, QUEUED_PIXELS)
    runtime.redis.hset(job_key(record.id), "attempts", "2")
    claim(runtime)
    _expire_lease(runtime.redis, record.id)
    sweeper.sweep()
    stored = _read(runtime.redis, record.id)
    assert (stored.state, stored.error_code) == (JobState.FAILED, ErrorCode.WORKER_LOST)
    assert tokens == []
    assert runtime.redis.zscore(LEASES_KEY, record.id) is None


def test_a_dead_childs_job_is_handed_back_at_once_and_a_timed_out_one_failed(
    runtime: Runtime, sweeper: Sweeper, queue_job: Callable[..., JobRecord]
) -> None:
    lost, slow = queue_job(runtime.redis, QUEUED_PIXELS), queue_job(runtime.redis, QUEUED_PIXELS)
    claim(runtime)
    runtime.redis.hset(job_key(slow.id), "holder", "host:other")  # as if another child had claimed it
    claim(runtime)
    runtime.redis.hset(job_key(slow.id), "holder", "host:other")
    sweeper.hand_back_holder(runtime.worker_id)
    assert _read(runtime.redis, lost.id).state is JobState.QUEUED
    assert _read(runtime.redis, slow.id).state is JobState.RUNNING
    ended = sweeper.fail_held("host:other", "Inference was stopped after 330 s.")
    assert [r.id for r in ended] == [slow.id]
    stored = _read(runtime.redis, slow.id)
    assert (stored.state, stored.error_code) == (JobState.FAILED, ErrorCode.INFERENCE_TIMEOUT)


def test_the_sweeper_fails_waiting_jobs_whose_input_expired(
    runtime: Runtime, sweeper: Sweeper, queue_job: Callable[..., JobRecord]
) -> None:
    expired, fine = queue_job(runtime.redis, QUEUED_PIXELS), queue_job(runtime.redis, QUEUED_PIXELS)
    runtime.redis.delete(input_key(expired.id))
    sweeper.sweep()
    stored = _read(runtime.redis, expired.id)
    assert (stored.state, stored.error_code) == (JobState.FAILED, ErrorCode.INPUT_EXPIRED)
    assert _read(runtime.redis, fine.id).state is JobState.QUEUED
    assert runtime.redis.lrange(WAITING_KEY, 0, -1) == [fine.id.encode()]


def test_the_sweeper_sends_messages_for_jobs_waiting_without_any(
    runtime: Runtime, sweeper: Sweeper, tokens: list[str], queue_job: Callable[..., JobRecord]
) -> None:
    jobs = [queue_job(runtime.redis, QUEUED_PIXELS) for _ in range(2)]
    runtime.redis.rpush(QUEUE_NAME, "a message")
    sweeper.sweep()
    sweeper.sweep()
    assert tokens == []  # the broker holds messages: nothing is missing
    runtime.redis.delete(QUEUE_NAME)
    sweeper.sweep()
    assert tokens == []  # one empty look is not enough (a message may be in flight)
    sweeper.sweep()
    assert tokens == [jobs[0].id, jobs[0].id]


def test_one_sweeper_at_a_time_and_another_takes_over_when_it_stops(runtime: Runtime) -> None:
    first = Sweeper(runtime.redis, print, holder="host:1", interval_s=0.2, max_attempts=3)
    second = Sweeper(runtime.redis, print, holder="host:2", interval_s=0.2, max_attempts=3)
    assert first.acquire()
    assert not second.acquire()
    assert first.acquire()  # kept by its holder
    time.sleep(0.7)  # three intervals without renewing
    assert second.acquire()
    assert not first.acquire()


@contextmanager
def _writes_to(redis_url: str) -> Iterator[list[str]]:
    """The write commands Redis runs on ``redis_url``'s database meanwhile (MONITOR, filtered by database:
    the session's worker beats its heartbeat into another database of the same server)."""
    db = int(redis_url.rsplit("/", 1)[1])
    marker = "animegan-test-monitor-end"
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with redis.Redis.from_url(redis_url) as client, client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if marker in command["command"]:
                    return  # MONITOR reports in execution order: every earlier write is in
                name = command["command"].split(" ", 1)[0].lower()
                if command["db"] == db and name in WRITE_COMMANDS:
                    seen.append(command["command"])

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(10), "MONITOR did not start"
    try:
        yield seen
    finally:
        with redis.Redis.from_url(redis_url) as client:
            client.echo(marker)
        thread.join(10)


def test_reading_a_job_whose_worker_vanished_writes_nothing(
    runtime: Runtime, start_api: Callable[..., str], redis_url: str, queue_job: Callable[..., JobRecord]
) -> None:
    base = start_api(redis_url=redis_url)
    record = queue_job(runtime.redis, QUEUED_PIXELS, owner="addr:127.0.0.1")
    claim(runtime)
    _expire_lease(runtime.redis, record.id)
    with _writes_to(redis_url) as writes:
        for _ in range(3):
            job = httpx.get(f"{base}/jobs/{record.id}").json()
            assert job["status"] == "running"  # the sweeper, not the reader, hands it back
    assert writes == []
