"""The state changes of a job, as commands added to a Redis pipeline.

Each ``add_*`` function only queues commands on ``pipe``; the caller executes the pipeline (or a
MULTI around it), so a change can join a transaction with other commands. Both sides use these:
the gateway on an asyncio pipeline, the workers on a blocking one (redis-py pipelines buffer
commands synchronously in both).
"""

from __future__ import annotations

import redis
import redis.asyncio

from jobstore.clock import now
from jobstore.errors import ErrorCode
from jobstore.keys import QUEUED_KEY, dedup_key, events_channel, input_key, job_key, result_key
from jobstore.records import JobRecord
from jobstore.states import JobState

Pipe = redis.client.Pipeline | redis.asyncio.client.Pipeline


def add_create(pipe: Pipe, record: JobRecord, raw_rgb: bytes) -> None:
    """Store the input and the queued record, and list the job as waiting."""
    pipe.set(input_key(record.id), raw_rgb, ex=record.input_ttl_s)
    pipe.hset(job_key(record.id), mapping=record.to_hash())  # type: ignore[arg-type]
    pipe.expire(job_key(record.id), record.record_ttl_s)
    pipe.zadd(QUEUED_KEY, {record.id: record.created_at})
    for digest in record.dedup_digests:
        pipe.set(dedup_key(digest), record.id, ex=record.record_ttl_s)


def add_mark_running(pipe: Pipe, record: JobRecord, started_at: float, *, deadline_at: float | None = None) -> None:
    """Mark a job running; the queue wait counts from creation to the first start."""
    fields = {"state": JobState.RUNNING.value, "started_at": str(started_at)}
    if record.queue_s is None:
        fields["queue_s"] = str(max(0.0, started_at - record.created_at))
    if deadline_at is not None:
        fields["deadline_at"] = str(deadline_at)
    pipe.hset(job_key(record.id), mapping=fields)  # type: ignore[arg-type]
    # A running job keeps its record for a full TTL (and a record that expired meanwhile gets one).
    pipe.expire(job_key(record.id), record.record_ttl_s)
    pipe.zrem(QUEUED_KEY, record.id)
    add_publish(pipe, record.id, JobState.RUNNING)


def add_publish(pipe: Pipe, job_id: str, state: JobState) -> None:
    """Announce a state change to the job's event streams (after the change, in the same pipeline)."""
    pipe.publish(events_channel(job_id), state.value)


def add_mark_succeeded(
    pipe: Pipe, record: JobRecord, *, inference_s: float, width: int, height: int, size: int, precision: str = ""
) -> None:
    """Complete a job whose result is already stored; TTLs restart from completion."""
    fields = {
        **({"precision": precision} if precision else {}),
        "state": JobState.SUCCEEDED.value,
        "finished_at": str(now()),
        "inference_s": str(inference_s),
        "output_width": str(width),
        "output_height": str(height),
        "output_bytes": str(size),
    }
    pipe.hset(job_key(record.id), mapping=fields)  # type: ignore[arg-type]
    pipe.expire(job_key(record.id), record.record_ttl_s)
    pipe.expire(result_key(record.id), record.result_ttl_s)
    # An identical request is answered from this job while both record and result exist.
    for digest in record.dedup_digests:
        pipe.set(dedup_key(digest), record.id, ex=min(record.record_ttl_s, record.result_ttl_s))
    pipe.delete(input_key(record.id))
    pipe.zrem(QUEUED_KEY, record.id)
    add_publish(pipe, record.id, JobState.SUCCEEDED)


def add_requeue(pipe: Pipe, record: JobRecord) -> None:
    """Put a job whose worker died mid-job back in line (its message is requeued); keeps its attempts."""
    pipe.hset(job_key(record.id), "state", JobState.QUEUED.value)
    pipe.hdel(job_key(record.id), "deadline_at")
    pipe.zadd(QUEUED_KEY, {record.id: record.created_at})
    add_publish(pipe, record.id, JobState.QUEUED)


def add_mark_failed(pipe: Pipe, record: JobRecord, code: ErrorCode, detail: str) -> None:
    """End a job as failed; the caller removes the dedup entry if it points at this job."""
    fields = {
        "state": JobState.FAILED.value,
        "finished_at": str(now()),
        "error_code": code.value,
        "error_detail": detail,
    }
    pipe.hset(job_key(record.id), mapping=fields)  # type: ignore[arg-type]
    pipe.expire(job_key(record.id), record.record_ttl_s)
    pipe.delete(input_key(record.id))
    pipe.zrem(QUEUED_KEY, record.id)
    add_publish(pipe, record.id, JobState.FAILED)


def add_prune_waiting(pipe: Pipe, max_age_s: float) -> None:
    """Forget waiting entries older than any record can live (their job is gone)."""
    pipe.zremrangebyscore(QUEUED_KEY, "-inf", now() - max_age_s)
