"""The job store's fair queue and transitions against a real Redis: admission, round-robin claims,
positions, leases, terminal cleanup, client scoping."""

from __future__ import annotations

import random

import anyio
import pytest
import redis
import redis.asyncio

from jobstore.keys import (
    LEASES_KEY,
    ROUND_KEY,
    WAITING_KEY,
    client_active_key,
    client_queue_key,
    dedup_key,
    idempotency_key,
    input_key,
    job_key,
    result_key,
)
from jobstore.queue import (
    Admitted,
    AsyncQueueScripts,
    Limits,
    QueueScripts,
    admit_call,
    claim_call,
    expire_call,
    parse_admitted,
    parse_claimed,
    position_call,
    renew_call,
)
from jobstore.records import ErrorCode, JobRecord, JobState, new_job_id, now
from jobstore.transitions import add_delete, add_mark_failed, add_mark_succeeded

UNLIMITED = Limits(10_000, 10_000)


def _record(client: str = "a", created_at: float | None = None, **changes: object) -> JobRecord:
    fields: dict[str, object] = {
        "id": new_job_id(),
        "state": JobState.QUEUED,
        "style": "hayao",
        "format": "png",
        "digest": new_job_id(),
        "upload_digest": new_job_id(),
        "created_at": now() if created_at is None else created_at,
        "width": 2,
        "height": 1,
        "original_width": 4,
        "original_height": 2,
        "input_ttl_s": 100,
        "result_ttl_s": 200,
        "record_ttl_s": 300,
        "client": client,
    }
    fields.update(changes)
    return JobRecord.model_validate(fields)


def _admit(
    client: redis.Redis, record: JobRecord, limits: Limits = UNLIMITED, idempotency: str | None = None
) -> Admitted:
    keys, args = admit_call(record, b"\x01" * 6, limits, idempotency, record.upload_digest or "")
    return parse_admitted(QueueScripts(client).admit(keys=keys, args=args))


def _claim(client: redis.Redis, holder: str = "host:1", lease_s: float = 20.0, max_attempts: int = 3) -> str | None:
    keys, args = claim_call(holder, now(), lease_s, max_attempts)
    claimed = parse_claimed(QueueScripts(client).claim(keys=keys, args=args))
    return None if claimed is None else claimed.job_id


def _read(client: redis.Redis, job_id: str) -> JobRecord:
    return JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]


def _position(client: redis.Redis, record: JobRecord) -> int | None:
    keys, args = position_call(record)
    found = QueueScripts(client).position(keys=keys, args=args)
    return int(found) if found else None


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_admit_stores_input_record_and_every_line_with_ttls(client: redis.Redis) -> None:
    record = _record("a")
    assert _admit(client, record) == Admitted("created", record.id, 1)
    assert client.get(input_key(record.id)) == b"\x01" * 6
    assert 90 < client.ttl(input_key(record.id)) <= 100  # type: ignore[operator]
    assert 290 < client.ttl(job_key(record.id)) <= 300  # type: ignore[operator]
    assert _read(client, record.id) == record
    assert client.lrange(WAITING_KEY, 0, -1) == [record.id.encode()]
    assert client.lrange(client_queue_key("a"), 0, -1) == [record.id.encode()]
    assert client.lrange(ROUND_KEY, 0, -1) == [b"a"]
    assert client.smembers(client_active_key("a")) == {record.id.encode()}
    assert client.get(dedup_key("a", record.digest)) == record.id.encode()


def test_claims_go_round_robin_across_clients_each_clients_jobs_in_order(client: redis.Redis) -> None:
    flood = [_record("a") for _ in range(10)]
    for record in flood:
        _admit(client, record)
    steady = [_record("b"), _record("b")]
    for record in steady:
        _admit(client, record)
    late = _record("c")
    _admit(client, late)
    order = [_claim(client) for _ in range(13)]
    expected = [flood[0], steady[0], late, flood[1], steady[1], *flood[2:]]
    assert order == [r.id for r in expected]
    assert _claim(client) is None
    assert client.llen(WAITING_KEY) == 0
    assert client.llen(ROUND_KEY) == 0


def test_positions_are_the_order_claims_will_take(client: redis.Redis) -> None:
    rng = random.Random(7)
    records = [_record(rng.choice("abcd")) for _ in range(40)]
    for record in records:
        _admit(client, record)
    _claim(client)  # rotate the round once, so the head is not the first client
    waiting = [r for r in records if _read(client, r.id).state is JobState.QUEUED]
    predicted = {r.id: _position(client, r) for r in waiting}
    actual = {job_id: i + 1 for i, job_id in enumerate(_claim(client) for _ in waiting)}
    assert predicted == actual


def test_a_claim_marks_running_leases_to_the_holder_and_counts_the_attempt(client: redis.Redis) -> None:
    record = _record("a", created_at=now() - 10)
    _admit(client, record)
    assert _claim(client, holder="host:42") == record.id
    stored = _read(client, record.id)
    assert (stored.state, stored.attempts, stored.holder) == (JobState.RUNNING, 1, "host:42")
    assert stored.queue_s is not None
    assert 9 < stored.queue_s < 12
    lease = client.zscore(LEASES_KEY, record.id)
    assert lease is not None
    assert now() + 15 < lease <= now() + 20
    assert _position(client, record) is None


def test_a_claim_skips_entries_whose_job_is_gone_or_no_longer_queued(client: redis.Redis) -> None:
    expired, cancelled, live = _record("a"), _record("a"), _record("a")
    for record in (expired, cancelled, live):
        _admit(client, record)
    client.delete(job_key(expired.id))
    client.hset(job_key(cancelled.id), "state", "failed")
    assert _claim(client) == live.id
    assert _claim(client) is None


def test_a_job_out_of_attempts_is_reported_exhausted_not_run(client: redis.Redis) -> None:
    record = _record("a", attempts=3)
    _admit(client, record)
    keys, args = claim_call("host:1", now(), 20, 3)
    claimed = parse_claimed(QueueScripts(client).claim(keys=keys, args=args))
    assert claimed is not None
    assert (claimed.outcome, claimed.job_id) == ("exhausted", record.id)
    assert _read(client, record.id).state is JobState.QUEUED  # the caller fails it


def _expire(client: redis.Redis, job_id: str, at: float, holder: str | None = None, max_attempts: int = 3) -> str:
    keys, args = expire_call(job_id, at, max_attempts, holder)
    outcome, _ = QueueScripts(client).expire(keys=keys, args=args)
    return str(outcome.decode())


def test_an_expired_lease_puts_the_job_back_at_the_head_of_the_line(client: redis.Redis) -> None:
    first, second = _record("a"), _record("a")
    other = _record("b")
    for record in (first, second, other):
        _admit(client, record)
    assert _claim(client, lease_s=5) == first.id
    assert _expire(client, first.id, now()) == "kept"  # the lease has not passed
    assert _expire(client, first.id, now() + 6) == "requeued"
    stored = _read(client, first.id)
    assert (stored.state, stored.holder, stored.attempts) == (JobState.QUEUED, None, 1)
    assert client.zscore(LEASES_KEY, first.id) is None
    assert _position(client, stored) == 1
    assert _claim(client) == first.id
    assert _read(client, first.id).attempts == 2


def test_a_dead_holders_job_goes_back_at_once_and_another_holders_stays(client: redis.Redis) -> None:
    record = _record("a")
    _admit(client, record)
    _claim(client, holder="host:1")
    assert _expire(client, record.id, now(), holder="host:2") == "kept"
    assert _expire(client, record.id, now(), holder="host:1") == "requeued"


def test_a_lease_past_its_attempts_is_exhausted_not_requeued(client: redis.Redis) -> None:
    record = _record("a", attempts=2)
    _admit(client, record)
    _claim(client)
    assert _expire(client, record.id, now() + 60) == "exhausted"
    assert _read(client, record.id).state is JobState.RUNNING  # the sweeper fails it
    assert client.llen(WAITING_KEY) == 0


def test_only_the_holder_renews_a_lease(client: redis.Redis) -> None:
    record = _record("a")
    _admit(client, record)
    _claim(client, holder="host:1", lease_s=5)
    scripts = QueueScripts(client)
    keys, args = renew_call(record.id, "host:2", now() + 100)
    assert scripts.renew(keys=keys, args=args) == 0
    keys, args = renew_call(record.id, "host:1", now() + 100)
    assert scripts.renew(keys=keys, args=args) == 1
    assert client.zscore(LEASES_KEY, record.id) == pytest.approx(now() + 100, abs=2)


def test_success_leaves_every_line_and_restarts_ttls_from_completion(client: redis.Redis) -> None:
    record = _record("a")
    _admit(client, record)
    _claim(client)
    client.expire(job_key(record.id), 5)  # as if the job waited most of its life
    client.set(result_key(record.id), b"png", nx=True)
    pipe = client.pipeline()
    add_mark_succeeded(pipe, record, inference_s=0.5, width=2, height=1, size=3)
    pipe.execute()
    done = _read(client, record.id)
    assert done.state is JobState.SUCCEEDED
    assert (done.output_width, done.output_height, done.output_bytes, done.inference_s) == (2, 1, 3, 0.5)
    assert client.exists(input_key(record.id), client_active_key("a")) == 0
    assert client.zscore(LEASES_KEY, record.id) is None
    assert client.ttl(job_key(record.id)) > 290  # type: ignore[operator]
    assert 190 < client.ttl(result_key(record.id)) <= 200  # type: ignore[operator]
    assert client.get(dedup_key("a", record.digest)) == record.id.encode()
    assert client.ttl(dedup_key("a", record.digest)) <= 200  # type: ignore[operator]


def test_failure_while_queued_is_terminal_and_leaves_every_line(client: redis.Redis) -> None:
    record = _record("a")
    _admit(client, record)
    pipe = client.pipeline()
    add_mark_failed(pipe, record, ErrorCode.INVALID_IMAGE, "cannot decode")
    pipe.execute()
    failed = _read(client, record.id)
    assert (failed.state, failed.error_code, failed.error_detail) == (
        JobState.FAILED,
        ErrorCode.INVALID_IMAGE,
        "cannot decode",
    )
    assert failed.finished_at is not None
    assert client.exists(input_key(record.id), client_queue_key("a"), client_active_key("a")) == 0
    assert client.llen(WAITING_KEY) == 0
    assert _claim(client) is None  # the round's stale entry is dropped


def test_delete_forgets_the_job_and_its_dedup_entries(client: redis.Redis) -> None:
    record = _record("a")
    _admit(client, record)
    pipe = client.pipeline()
    add_delete(pipe, record)
    pipe.execute()
    assert client.exists(job_key(record.id), input_key(record.id), dedup_key("a", record.digest)) == 0
    assert client.llen(WAITING_KEY) == 0


def test_admission_stops_at_the_global_depth_and_at_each_clients_quota(client: redis.Redis) -> None:
    limits = Limits(max_depth=5, max_per_client=3)
    assert [_admit(client, _record("a"), limits).outcome for _ in range(4)] == ["created"] * 3 + ["client-quota"]
    assert [_admit(client, _record("b"), limits).outcome for _ in range(3)] == ["created", "created", "queue-full"]
    assert _admit(client, _record("c"), limits) == Admitted("queue-full", "", 5)
    # A running job still counts against its client; a finished one frees the slot.
    job_id = _claim(client)
    assert _admit(client, _record("a"), limits).outcome == "client-quota"
    pipe = client.pipeline()
    add_mark_failed(pipe, _read(client, str(job_id)), ErrorCode.INVALID_IMAGE, "x")
    pipe.execute()
    assert _admit(client, _record("a"), limits).outcome == "created"


def test_an_expired_record_frees_its_clients_slot(client: redis.Redis) -> None:
    limits = Limits(max_depth=50, max_per_client=1)
    gone = _record("a")
    _admit(client, gone, limits)
    client.delete(job_key(gone.id))
    assert _admit(client, _record("a"), limits).outcome == "created"


def test_dedup_is_scoped_to_the_client(client: redis.Redis) -> None:
    first = _record("a")
    _admit(client, first)
    same_pixels = {"digest": first.digest, "upload_digest": first.upload_digest}
    assert _admit(client, _record("a", **same_pixels)) == Admitted("deduplicated", first.id)
    other = _record("b", **same_pixels)
    assert _admit(client, other).outcome == "created"
    pipe = client.pipeline()
    add_mark_failed(pipe, first, ErrorCode.INVALID_IMAGE, "x")
    pipe.execute()
    retry = _record("a", **same_pixels)
    assert _admit(client, retry).outcome == "created"  # a failed job answers nothing


def test_an_idempotency_key_replays_its_job_for_its_client_only(client: redis.Redis) -> None:
    first = _record("a")
    assert _admit(client, first, idempotency="k1").outcome == "created"
    again = _record("a", upload_digest=first.upload_digest)
    assert _admit(client, again, idempotency="k1") == Admitted("replayed", first.id)
    assert _admit(client, _record("a"), idempotency="k1").outcome == "idempotency-key-reused"
    assert _admit(client, _record("b", upload_digest=first.upload_digest), idempotency="k1").outcome == "created"
    assert client.exists(idempotency_key("a", "k1"), idempotency_key("b", "k1")) == 2


@pytest.mark.anyio
async def test_concurrent_admissions_never_pass_either_limit(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, max_connections=100)
    scripts = AsyncQueueScripts(client)
    outcomes: list[str] = []

    async def submit(owner: str) -> None:
        record = _record(owner)
        keys, args = admit_call(record, b"\x01" * 6, Limits(max_depth=20, max_per_client=8), None, "f")
        outcomes.append(parse_admitted(await scripts.admit(keys=keys, args=args)).outcome)

    async with anyio.create_task_group() as group:
        for i in range(100):
            group.start_soon(submit, "abcd"[i % 4])
    assert outcomes.count("created") == 20
    assert await client.llen(WAITING_KEY) == 20
    for owner in "abcd":
        assert await client.scard(client_active_key(owner)) <= 8
    await client.aclose()
