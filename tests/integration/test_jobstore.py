"""The job-store transitions against a real Redis: keys, TTLs, queue order, cleanup."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio

from jobstore.clock import now
from jobstore.errors import ErrorCode
from jobstore.ids import new_job_id
from jobstore.keys import QUEUED_KEY, dedup_key, input_key, job_key, result_key
from jobstore.records import JobRecord
from jobstore.states import JobState
from jobstore.transitions import add_create, add_mark_failed, add_mark_running, add_mark_succeeded, add_prune_waiting


def _record(created_at: float, **changes: object) -> JobRecord:
    fields: dict[str, object] = {
        "id": new_job_id(),
        "state": JobState.QUEUED,
        "style": "hayao",
        "format": "png",
        "digest": new_job_id(),
        "created_at": created_at,
        "width": 2,
        "height": 1,
        "original_width": 4,
        "original_height": 2,
        "input_ttl_s": 100,
        "result_ttl_s": 200,
        "record_ttl_s": 300,
    }
    fields.update(changes)
    return JobRecord.model_validate(fields)


def _create(client: redis.Redis, record: JobRecord) -> None:
    pipe = client.pipeline()
    add_create(pipe, record, b"\x01" * 6)
    pipe.execute()


def _read(client: redis.Redis, job_id: str) -> JobRecord:
    return JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]


def test_create_stores_input_record_and_queue_entry_with_ttls(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    record = _record(now())
    _create(client, record)
    assert client.get(input_key(record.id)) == b"\x01" * 6
    assert 90 < client.ttl(input_key(record.id)) <= 100  # type: ignore[operator]
    assert 290 < client.ttl(job_key(record.id)) <= 300  # type: ignore[operator]
    assert _read(client, record.id) == record
    assert client.zrank(QUEUED_KEY, record.id) == 0


def test_queue_position_follows_enqueue_order_and_running_leaves_the_queue(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    first, second, third = (_record(now() + i) for i in range(3))
    for record in (first, second, third):
        _create(client, record)
    assert [client.zrank(QUEUED_KEY, r.id) for r in (first, second, third)] == [0, 1, 2]
    pipe = client.pipeline()
    add_mark_running(pipe, first, started_at=first.created_at + 2.5)
    pipe.execute()
    running = _read(client, first.id)
    assert running.state is JobState.RUNNING
    assert running.queue_s == 2.5
    assert client.zrank(QUEUED_KEY, second.id) == 0


def test_a_redelivered_job_keeps_its_first_queue_wait(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    record = _record(now())
    _create(client, record)
    for started in (record.created_at + 1, record.created_at + 9):
        pipe = client.pipeline()
        add_mark_running(pipe, _read(client, record.id), started_at=started)
        pipe.execute()
    assert _read(client, record.id).queue_s == 1.0


def test_success_drops_the_input_and_restarts_ttls_from_completion(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    record = _record(now())
    _create(client, record)
    client.expire(job_key(record.id), 5)  # as if the job waited most of its life
    client.set(result_key(record.id), b"png", nx=True)
    pipe = client.pipeline()
    add_mark_succeeded(pipe, record, inference_s=0.5, width=2, height=1, size=3)
    pipe.execute()
    done = _read(client, record.id)
    assert done.state is JobState.SUCCEEDED
    assert (done.output_width, done.output_height, done.output_bytes, done.inference_s) == (2, 1, 3, 0.5)
    assert client.exists(input_key(record.id)) == 0
    assert client.ttl(job_key(record.id)) > 290  # type: ignore[operator]
    assert 190 < client.ttl(result_key(record.id)) <= 200  # type: ignore[operator]
    assert client.get(dedup_key(record.digest)) == record.id.encode()
    assert client.ttl(dedup_key(record.digest)) <= 200  # type: ignore[operator]


def test_failure_is_terminal_with_a_code_and_detail(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    record = _record(now())
    _create(client, record)
    pipe = client.pipeline()
    add_mark_failed(pipe, record, ErrorCode.INVALID_IMAGE, "cannot decode")
    pipe.execute()
    failed = _read(client, record.id)
    assert failed.state is JobState.FAILED
    assert failed.state.terminal
    assert (failed.error_code, failed.error_detail) == (ErrorCode.INVALID_IMAGE, "cannot decode")
    assert failed.finished_at is not None
    assert client.exists(input_key(record.id)) == 0
    assert client.zrank(QUEUED_KEY, record.id) is None


def test_prune_forgets_waiting_entries_older_than_any_record(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    old, new = _record(now() - 1000), _record(now())
    for record in (old, new):
        _create(client, record)
    pipe = client.pipeline()
    add_prune_waiting(pipe, max_age_s=300)
    pipe.execute()
    assert client.zrange(QUEUED_KEY, 0, -1) == [new.id.encode()]


@pytest.mark.anyio
async def test_the_asyncio_client_runs_the_same_pipelines(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    record = _record(now())
    pipe = client.pipeline()
    add_create(pipe, record, b"\x02" * 6)
    await pipe.execute()
    assert JobRecord.from_hash(await client.hgetall(job_key(record.id))) == record
    await client.aclose()
