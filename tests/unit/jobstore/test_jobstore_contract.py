"""The job-store contract: record (de)serialisation, key names, ids, wait estimates, heartbeats."""

from __future__ import annotations

import json

import pytest

from jobstore.heartbeats import Heartbeat, live_heartbeats
from jobstore.keys import (
    LEASES_KEY,
    ROUND_KEY,
    SERVICE_TIME_KEY,
    SWEEPER_LOCK_KEY,
    WAITING_KEY,
    WORKERS_KEY,
    client_active_key,
    client_queue_key,
    dedup_key,
    idempotency_key,
    input_key,
    job_key,
    result_key,
)
from jobstore.queue import (
    Limits,
    admit_call,
    decode_idempotency,
    encode_idempotency,
    estimate_wait_s,
    next_service_time,
    request_digest,
)
from jobstore.records import ErrorCode, JobRecord, JobState, error_title, is_job_id, new_job_id


def _record(**changes: object) -> JobRecord:
    fields: dict[str, object] = {
        "id": new_job_id(),
        "state": JobState.QUEUED,
        "style": "hayao",
        "format": "png",
        "digest": "d" * 64,
        "created_at": 1_700_000_000.25,
        "width": 128,
        "height": 85,
        "original_width": 451,
        "original_height": 300,
        "input_ttl_s": 60,
        "result_ttl_s": 70,
        "record_ttl_s": 80,
    }
    fields.update(changes)
    return JobRecord.model_validate(fields)


def test_record_round_trips_through_a_redis_hash() -> None:
    record = _record(error_code=ErrorCode.INVALID_IMAGE, error_detail="bad", queue_s=0.125, attempts=2)
    as_hash = record.to_hash()
    assert all(isinstance(v, str) for v in as_hash.values())
    assert "started_at" not in as_hash  # None is stored as an absent field
    raw = {k.encode(): v.encode() for k, v in as_hash.items()}
    assert JobRecord.from_hash(raw) == record


def test_job_ids_are_long_random_and_url_safe() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_job_id(i) and len(i) >= 22 for i in ids)


@pytest.mark.parametrize("value", ["", "short", "../etc/passwd", "a" * 65, "abc def ghi jkl mno", "é" * 20])
def test_is_job_id_refuses_what_new_job_id_never_makes(value: str) -> None:
    assert not is_job_id(value)


def test_keys_live_under_the_animegan_prefix() -> None:
    keys = [
        job_key("x"),
        input_key("x"),
        result_key("x"),
        dedup_key("key:alice", "d"),
        dedup_key("key:bob", "d"),
        idempotency_key("key:alice", "any key with spaces / and :colons"),
        idempotency_key("key:bob", "any key with spaces / and :colons"),
        client_queue_key("key:alice"),
        client_active_key("key:alice"),
        WAITING_KEY,
        ROUND_KEY,
        LEASES_KEY,
        SWEEPER_LOCK_KEY,
        WORKERS_KEY,
        SERVICE_TIME_KEY,
    ]
    assert all(k.startswith("animegan:") for k in keys)
    assert len(set(keys)) == len(keys)
    assert " " not in idempotency_key("key:alice", "any key with spaces")


def test_request_digest_depends_on_pixels_size_style_and_format() -> None:
    base = request_digest(b"\x00" * 12, 2, 2, "hayao", "png")
    assert base == request_digest(b"\x00" * 12, 2, 2, "hayao", "png")
    others = {
        request_digest(b"\x01" + b"\x00" * 11, 2, 2, "hayao", "png"),
        request_digest(b"\x00" * 12, 4, 1, "hayao", "png"),
        request_digest(b"\x00" * 12, 2, 2, "paprika", "png"),
        request_digest(b"\x00" * 12, 2, 2, "hayao", "jpeg"),
    }
    assert base not in others
    assert len(others) == 4


def test_terminal_states() -> None:
    assert [s for s in JobState if s.terminal] == [JobState.SUCCEEDED, JobState.FAILED]


def test_every_error_code_has_a_title() -> None:
    assert all(error_title(code) for code in ErrorCode)


def test_wait_estimate_scales_with_queue_and_workers() -> None:
    assert estimate_wait_s(0, 2.0, 1) == 2.0
    assert estimate_wait_s(3, 2.0, 2) == 4.0
    assert estimate_wait_s(3, 2.0, 0) == 8.0  # no live worker: assume one


def test_service_time_average_moves_toward_new_samples() -> None:
    assert next_service_time(None, 3.0) == 3.0
    moved = next_service_time(b"2.0", 4.0)
    assert 2.0 < moved < 4.0


def test_only_unexpired_heartbeats_count() -> None:
    def beat(worker: str, expires_at: float) -> bytes:
        return (
            Heartbeat(worker_id=worker, pid=1, styles=["hayao"], threads=1, expires_at=expires_at)
            .model_dump_json()
            .encode()
        )

    raw = {b"a": beat("a", 110.0), b"b": beat("b", 90.0), b"c": b"not json"}
    assert [b.worker_id for b in live_heartbeats(raw, at=100.0)] == ["a"]


def test_idempotency_value_round_trips() -> None:
    encoded = encode_idempotency("job", "print")
    assert json.loads(encoded) == {"job_id": "job", "fingerprint": "print"}
    assert decode_idempotency(encoded.encode()) == ("job", "print")


def test_admit_stores_the_idempotency_value_the_gateway_decodes() -> None:
    record = _record(upload_digest="u" * 64)
    keys, args = admit_call(record, b"rgb", Limits(max_depth=10, max_per_client=5), "retry-1", "f" * 64)
    assert keys[-1] == idempotency_key(record.client, "retry-1")
    # The script puts the id of the job that answers in place of {JOB}.
    stored = str(args[8]).replace("{JOB}", record.id)
    assert decode_idempotency(stored) == (record.id, "f" * 64)
