"""The terminal state changes of a job, as commands added to a Redis pipeline.

Creating, claiming and handing back a job are Lua scripts (``jobstore.queue``): they decide on
what they read. Ending a job decides nothing, so it is a list of commands: each ``add_*``
function only queues them on ``pipe`` and the caller executes the pipeline (or a MULTI around
it), so the change can join a transaction with other commands. Both sides use these: the
gateway on an asyncio pipeline, the workers on a blocking one (redis-py pipelines buffer
commands synchronously in both).
"""

from __future__ import annotations

import redis
import redis.asyncio

from jobstore.batches import add_batch_progress
from jobstore.blobs import add_job_ended
from jobstore.keys import (
    LEASES_KEY,
    WAITING_KEY,
    client_active_key,
    client_queue_key,
    dedup_key,
    events_channel,
    input_key,
    job_key,
    result_key,
)
from jobstore.records import ErrorCode, JobRecord, JobState, now
from jobstore.webhooks import WebhookEvent, add_schedule_webhook

Pipe = redis.client.Pipeline | redis.asyncio.client.Pipeline


def add_publish(pipe: Pipe, job_id: str, state: JobState) -> None:
    """Announce a state change to the job's event streams (after the change, in the same pipeline)."""
    pipe.publish(events_channel(job_id), state.value)


def add_leave(pipe: Pipe, record: JobRecord) -> None:
    """Take an ending job out of every line and count: waiting lists, its lease, its client's quota."""
    pipe.delete(input_key(record.id))
    pipe.lrem(WAITING_KEY, 1, record.id)
    pipe.lrem(client_queue_key(record.client), 1, record.id)
    pipe.zrem(LEASES_KEY, record.id)
    pipe.srem(client_active_key(record.client), record.id)


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
    add_job_ended(pipe, record, result_ttl_s=record.result_ttl_s)
    # An identical request of the same client is answered from this job while record and result
    # exist (not a job with a callback: its end is announced to its own request only).
    for digest in [] if record.callback_url else record.dedup_digests:
        pipe.set(dedup_key(record.client, digest), record.id, ex=min(record.record_ttl_s, record.result_ttl_s))
    add_leave(pipe, record)
    add_schedule_webhook(pipe, record, WebhookEvent.JOB_SUCCEEDED)
    add_batch_progress(pipe, record.id)
    add_publish(pipe, record.id, JobState.SUCCEEDED)


def add_mark_failed(pipe: Pipe, record: JobRecord, code: ErrorCode, detail: str) -> None:
    """End a job as failed (a failed job answers no later request: dedup skips it)."""
    fields = {
        "state": JobState.FAILED.value,
        "finished_at": str(now()),
        "error_code": code.value,
        "error_detail": detail,
    }
    pipe.hset(job_key(record.id), mapping=fields)  # type: ignore[arg-type]
    pipe.expire(job_key(record.id), record.record_ttl_s)
    add_job_ended(pipe, record, result_ttl_s=None)
    add_leave(pipe, record)
    add_schedule_webhook(pipe, record, WebhookEvent.JOB_FAILED)
    add_batch_progress(pipe, record.id)
    add_publish(pipe, record.id, JobState.FAILED)


def add_delete(pipe: Pipe, record: JobRecord) -> None:
    """Forget a job now (DELETE /jobs/{id}): record, input, result and the client's dedup entries.

    Objects in the store are scheduled for deletion now; the caller deletes them at once as well.
    """
    add_job_ended(pipe, record, result_ttl_s=None)
    add_leave(pipe, record)
    add_batch_progress(pipe, record.id)  # before the record goes: the script reads its batch
    pipe.delete(job_key(record.id), result_key(record.id))
    for digest in record.dedup_digests:
        pipe.delete(dedup_key(record.client, digest))
