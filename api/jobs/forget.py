"""Forgetting a job (DELETE /jobs/{id}): its record, input, result and dedup entries, unless a worker runs it now.

Objects in the store are scheduled for deletion in the same transaction (``jobstore.transitions``),
then deleted at once; one the store does not delete now is deleted by the workers' reaper. A video
is forgotten with its parts, clip, pieces and result (``jobstore.videos.add_video_forget``); it
runs from the claim of its first segment until its join ends it.
"""

from __future__ import annotations

import logging

import redis.asyncio
from redis.exceptions import RedisError, WatchError

from jobstore.blobs import forget_async, in_object_store, input_name, result_name
from jobstore.keys import job_key
from jobstore.objectstore import ObjectStore, StoreError
from jobstore.records import JobKind, JobRecord, JobState
from jobstore.transitions import add_delete
from jobstore.video_blobs import piece_name
from jobstore.videos import add_video_forget, part_ids

logger = logging.getLogger(__name__)


async def forget_job(
    store: redis.asyncio.Redis, record: JobRecord, objects: ObjectStore | None = None
) -> JobRecord | None:
    """None once deleted (or already gone), else the running record.

    Atomic against a worker claiming the job meanwhile (WATCH on its record, and a video's parts).
    """
    key = job_key(record.id)
    keys = [key, *(job_key(part) for part in part_ids(record))] if record.job_kind is JobKind.VIDEO else [key]
    async with store.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(*keys)
                raw = await pipe.hgetall(key)
                if not raw:
                    return None
                current = JobRecord.from_hash(raw)
                if current.state is JobState.RUNNING or await _part_running(pipe, keys[1:]):
                    return current
                pipe.multi()  # type: ignore[no-untyped-call]
                if current.job_kind is JobKind.VIDEO:
                    add_video_forget(pipe, current)
                else:
                    add_delete(pipe, current)
                await pipe.execute()
                await _delete_objects(store, objects, current)
                return None
            except WatchError:
                continue


async def _part_running(pipe: redis.asyncio.client.Pipeline, part_keys: list[str]) -> bool:
    """True when a part of the video was claimed a moment ago (before the video's record says so)."""
    for part in part_keys:
        if await pipe.hget(part, "state") == JobState.RUNNING.value.encode():
            return True
    return False


async def _delete_objects(store: redis.asyncio.Redis, objects: ObjectStore | None, record: JobRecord) -> None:
    if objects is None or not in_object_store(record):
        return
    names = [input_name(record.id), result_name(record.id)]
    if record.job_kind is JobKind.VIDEO:
        names += [piece_name(part) for part in part_ids(record)[:-1]]
    try:
        await objects.delete_async(names)
        await forget_async(store, names)
    except (StoreError, RedisError):
        logger.warning("objects of a deleted job left to the reaper", extra={"job_id": record.id})
