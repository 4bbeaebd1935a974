"""Where a job's image bytes live, and when they must go.

Two places. Redis, the default: ``input:{id}`` (written by the ADMIT script with the record) and
``result:{id}`` (the worker's SET NX), each with its TTL. Or, with ANIMEGAN_S3_BUCKET, the object
store (``jobstore.objectstore``): objects named ``input/{id}`` and ``result/{id}`` under the
configured prefix, and Redis keeps records, queues and leases only. A record tells which: its
``blobs`` field is ``"s3"`` for the object store, absent for Redis (every record written before).

Objects do not expire on time by themselves (S3 lifecycle rules count whole days; one of a day is
the safety net), so the job store keeps their deletion schedule, ``blobs:due`` (sorted set: name
-> unix time to delete it):

- the gateway schedules an input at its TTL *before* writing it, so an upload whose admission
  never happened (refused, or the gateway died) is still deleted;
- the worker schedules a result the same way before writing it;
- every job's end moves its input to now and its result to the result TTL
  (``jobstore.transitions``); DELETE /jobs/{id} moves both to now;
- the reaper (``worker.blob_reaper``) deletes what is due and only then removes the members, so a
  deletion that failed is tried again.

``RedisBlobs`` and ``ObjectBlobs`` are the workers' two backends, behind one interface
(``JobBlobs``). Imports redis and the job store only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import redis
import redis.asyncio

from jobstore.job_view import ResultLink
from jobstore.keys import BLOBS_DUE_KEY, input_key, result_key
from jobstore.objectstore import ObjectStore
from jobstore.records import JobRecord, JobState, as_text, now

Pipe = redis.client.Pipeline | redis.asyncio.client.Pipeline

OBJECT_STORE = "s3"
# How many due objects one reaper pass deletes (one DeleteObjects request).
REAP_BATCH = 1000


def input_name(job_id: str) -> str:
    return f"input/{job_id}"


def result_name(job_id: str) -> str:
    return f"result/{job_id}"


def in_object_store(record: JobRecord) -> bool:
    return record.blobs == OBJECT_STORE


def add_due(pipe: Pipe, name: str, at: float) -> None:
    """Schedule the deletion of object ``name`` at unix time ``at`` (replaces an earlier schedule)."""
    pipe.zadd(BLOBS_DUE_KEY, {name: at})


def add_job_ended(pipe: Pipe, record: JobRecord, *, result_ttl_s: int | None) -> None:
    """A job ended (or was deleted): its input goes now; its result at ``result_ttl_s`` from now (None: now)."""
    if not in_object_store(record):
        return
    at = now()
    add_due(pipe, input_name(record.id), at)
    add_due(pipe, result_name(record.id), at + (result_ttl_s or 0))


def due_names(client: redis.Redis, at: float, limit: int = REAP_BATCH) -> list[str]:
    """Names whose deletion is due at ``at``, oldest first."""
    members = client.zrangebyscore(BLOBS_DUE_KEY, "-inf", at, start=0, num=limit)
    return [as_text(m) for m in members if isinstance(m, bytes | str)]


def forget(client: redis.Redis, names: Sequence[str]) -> None:
    """Remove deleted objects from the schedule."""
    if names:
        client.zrem(BLOBS_DUE_KEY, *names)


async def forget_async(client: redis.asyncio.Redis, names: Sequence[str]) -> None:
    """``forget`` for the gateway's event loop."""
    if names:
        await client.zrem(BLOBS_DUE_KEY, *names)


# A link valid for less than this is not handed out (it could expire before the client uses it).
MIN_LINK_S = 5.0


def result_link(store: ObjectStore, record: JobRecord, url_ttl_s: float, at: float | None = None) -> ResultLink | None:
    """A presigned GET URL of a succeeded job's result in the store: valid ``url_ttl_s``, never past the
    result's own deletion (finished_at + result TTL); None for a job without one."""
    if not in_object_store(record) or record.state is not JobState.SUCCEEDED or record.finished_at is None:
        return None
    at = now() if at is None else at
    expires = min(at + url_ttl_s, record.finished_at + record.result_ttl_s)
    if expires - at < MIN_LINK_S:
        return None
    return ResultLink(url=store.sign(result_name(record.id), expires - at), expires_at=expires)


# The normalized input as the gateway stores it: raw RGB rows, width and height on the record.
INPUT_CONTENT_TYPE = "application/octet-stream"


def put_input(client: redis.Redis, store: ObjectStore, job_id: str, raw: bytes, ttl_s: int) -> None:
    """Store a new job's input in the object store, scheduled first (before ADMIT, which gets ``raw=b""``)."""
    client.zadd(BLOBS_DUE_KEY, {input_name(job_id): now() + ttl_s})
    store.put(input_name(job_id), raw, INPUT_CONTENT_TYPE)


async def put_input_async(client: redis.asyncio.Redis, store: ObjectStore, job_id: str, raw: bytes, ttl_s: int) -> None:
    """``put_input`` for the gateway's event loop."""
    await client.zadd(BLOBS_DUE_KEY, {input_name(job_id): now() + ttl_s})
    await store.put_async(input_name(job_id), raw, INPUT_CONTENT_TYPE)


class JobBlobs(Protocol):
    """A worker's view of where one job's bytes are."""

    def read_input(self, record: JobRecord) -> bytes | None:
        """The normalized input's raw RGB bytes; None when it expired or is gone."""

    def write_result(self, record: JobRecord, data: bytes, content_type: str) -> bool:
        """Store the encoded result; False when an earlier run already stored one (kept)."""


class RedisBlobs:
    """Today's default: the bytes are Redis values with TTLs."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def read_input(self, record: JobRecord) -> bytes | None:
        data = self.redis.get(input_key(record.id))
        return data if isinstance(data, bytes) else None

    def write_result(self, record: JobRecord, data: bytes, content_type: str) -> bool:
        return bool(self.redis.set(result_key(record.id), data, nx=True, ex=record.result_ttl_s))


class ObjectBlobs:
    """The bytes are objects in the bucket; Redis holds their deletion schedule only."""

    def __init__(self, client: redis.Redis, store: ObjectStore) -> None:
        self.redis = client
        self.store = store

    def read_input(self, record: JobRecord) -> bytes | None:
        return self.store.get(input_name(record.id))

    def write_result(self, record: JobRecord, data: bytes, content_type: str) -> bool:
        # Scheduled first: a result written by a run that then died is still deleted on time. A
        # re-run overwrites it (the earlier run never announced it; S3 has no cheap write-once).
        self.redis.zadd(BLOBS_DUE_KEY, {result_name(record.id): now() + record.result_ttl_s})
        self.store.put(result_name(record.id), data, content_type)
        return True
