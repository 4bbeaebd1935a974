"""Batches in the job store: the ``batch:{id}`` record, its admission, and its progress.

A batch is a list of entries, one per uploaded file in order: either a job (queued through
``jobstore.queue_scripts.ADMIT_BATCH``, all of the batch's jobs or none) or the problem that kept the file
out. The record (client, callback, entries as JSON) and the set of jobs not ended yet
(``batch:{id}:pending``) are written by the same script that queues the jobs; each job's hash
carries ``batch`` = the batch id.

Progress is a script too (``PROGRESS``), queued by ``jobstore.transitions`` on the pipeline that
ends a job: it removes the job from the pending set and, when that removal empties the set,
schedules the ``batch.completed`` webhook. Redis runs it inside the same MULTI as the terminal
state, and SREM removes a member once, so the announcement is scheduled exactly once, after every
job of the batch is terminal. Each job's end also restarts the batch record's TTL: the batch lives
``record_ttl_s`` after its last job ended, like the job records it lists. Imports redis, pydantic
and the job store only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio

from jobstore.keys import PREFIX, ROUND_KEY, WAITING_KEY, batch_key, batch_pending_key, client_active_key, job_key
from jobstore.queue import Limits
from jobstore.records import JobRecord, RawHash, as_text, now
from jobstore.webhooks import PENDING_TTL_S, WebhookEvent, new_delivery_id

Pipe = redis.client.Pipeline | redis.asyncio.client.Pipeline


@dataclass(frozen=True)
class BatchEntry:
    """One uploaded file: its job, or the problem (type, title, status, detail) that refused it."""

    index: int
    filename: str
    job_id: str | None = None
    problem: dict[str, Any] | None = None


@dataclass(frozen=True)
class BatchRecord:
    id: str
    client: str
    created_at: float
    style: str
    format: str
    record_ttl_s: int
    entries: list[BatchEntry] = field(default_factory=list)
    callback_url: str | None = None

    @property
    def job_ids(self) -> list[str]:
        return [e.job_id for e in self.entries if e.job_id is not None]

    def to_hash(self) -> dict[str, str]:
        fields = {
            "id": self.id,
            "client": self.client,
            "created_at": repr(self.created_at),
            "style": self.style,
            "format": self.format,
            "record_ttl_s": str(self.record_ttl_s),
            "entries": json.dumps([e.__dict__ for e in self.entries], separators=(",", ":")),
        }
        if self.callback_url:
            fields["callback_url"] = self.callback_url
        return fields

    @classmethod
    def from_hash(cls, raw: RawHash) -> BatchRecord:
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        return cls(
            id=fields["id"],
            client=fields["client"],
            created_at=float(fields["created_at"]),
            style=fields["style"],
            format=fields["format"],
            record_ttl_s=int(fields["record_ttl_s"]),
            entries=[BatchEntry(**e) for e in json.loads(fields["entries"])],
            callback_url=fields.get("callback_url"),
        )


def admit_batch_call(
    batch: BatchRecord, jobs: Sequence[tuple[JobRecord, bytes]], limits: Limits
) -> tuple[list[str], list[bytes | str | int]]:
    """KEYS and ARGV of ADMIT_BATCH: ``jobs`` are the records and raw inputs, in file order."""
    keys = [WAITING_KEY, ROUND_KEY, client_active_key(batch.client), batch_key(batch.id), batch_pending_key(batch.id)]
    first = jobs[0][0]
    args: list[bytes | str | int] = [
        batch.id,
        batch.client,
        limits.max_depth,
        limits.max_per_client,
        first.input_ttl_s,
        batch.record_ttl_s,
        len(jobs),
    ]
    for record, raw in jobs:
        fields = [x for pair in record.to_hash().items() for x in pair]
        args += [record.id, raw, len(fields), *fields]
    args += [x for pair in batch.to_hash().items() for x in pair]
    return keys, args


@dataclass(frozen=True)
class BatchAdmitted:
    """``outcome`` created, queue-full or client-quota; ``count`` the depth, or the client's jobs."""

    outcome: str
    count: int


def parse_batch_admitted(reply: Sequence[bytes | str]) -> BatchAdmitted:
    outcome, count = (as_text(x) for x in reply)
    return BatchAdmitted(outcome, int(count))


PROGRESS = f"""
-- KEYS: job.  ARGV: job id, delivery id (used if this end completes the batch), now, pending TTL.
local P = '{PREFIX}'
local batch = redis.call('HGET', KEYS[1], 'batch')
if not batch then return 0 end
local key = P .. 'batch:' .. batch
local pending = key .. ':pending'
if redis.call('SREM', pending, ARGV[1]) == 0 then return 0 end
local ttl = redis.call('HGET', key, 'record_ttl_s')
if ttl then redis.call('EXPIRE', key, ttl) end
if redis.call('SCARD', pending) > 0 then
  if ttl then redis.call('EXPIRE', pending, ttl) end
  return 1
end
local url = redis.call('HGET', key, 'callback_url')
if not url then return 2 end
local delivery = P .. 'webhook:' .. ARGV[2]
redis.call('HSET', delivery, 'id', ARGV[2], 'event', '{WebhookEvent.BATCH_COMPLETED.value}', 'url', url,
  'job_id', '', 'batch_id', batch, 'attempt', '0', 'state', 'pending', 'created_at', ARGV[3], 'due_at', ARGV[3])
redis.call('EXPIRE', delivery, ARGV[4])
redis.call('ZADD', P .. 'webhooks:due', ARGV[3], ARGV[2])
return 3
"""


def add_batch_progress(pipe: Pipe, job_id: str) -> None:
    """Count a job's end against its batch, if it has one (queued on the pipeline that ends the job)."""
    pipe.eval(PROGRESS, 1, job_key(job_id), job_id, new_delivery_id(), repr(now()), PENDING_TTL_S)


def parse_batch(raw: RawHash) -> BatchRecord | None:
    return BatchRecord.from_hash(raw) if raw else None


def read_batch_sync(client: redis.Redis, batch_id: str) -> tuple[BatchRecord, list[JobRecord | None]] | None:
    """The batch and its jobs' records (None where a record is gone), from a blocking client."""
    batch = parse_batch(client.hgetall(batch_key(batch_id)))
    if batch is None:
        return None
    pipe = client.pipeline(transaction=False)
    for job_id in batch.job_ids:
        pipe.hgetall(job_key(job_id))
    return batch, [JobRecord.from_hash(raw) if raw else None for raw in pipe.execute()]


async def read_batch(client: redis.asyncio.Redis, batch_id: str) -> tuple[BatchRecord, list[JobRecord | None]] | None:
    """``read_batch_sync`` on an asyncio client (the gateway)."""
    batch = parse_batch(await client.hgetall(batch_key(batch_id)))
    if batch is None:
        return None
    pipe = client.pipeline(transaction=False)
    for job_id in batch.job_ids:
        pipe.hgetall(job_key(job_id))
    return batch, [JobRecord.from_hash(raw) if raw else None for raw in await pipe.execute()]
