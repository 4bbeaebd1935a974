"""Forgetting a job (DELETE /jobs/{id}): its record, input, result and dedup entries, unless a worker runs it now.

Objects in the store are scheduled for deletion in the same transaction (``jobstore.transitions``),
then deleted at once; one the store does not delete now is deleted by the workers' reaper.
"""

from __future__ import annotations

import logging

import redis.asyncio
from redis.exceptions import RedisError, WatchError

from jobstore.blobs import forget_async, in_object_store, input_name, result_name
from jobstore.keys import job_key
from jobstore.objectstore import ObjectStore, StoreError
from jobstore.records import JobRecord, JobState
from jobstore.transitions import add_delete

logger = logging.getLogger(__name__)


async def forget_job(
    store: redis.asyncio.Redis, record: JobRecord, objects: ObjectStore | None = None
) -> JobRecord | None:
    """None once deleted (or already gone), else the running record.

    Atomic against a worker claiming the job meanwhile (WATCH on its record).
    """
    key = job_key(record.id)
    async with store.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key)
                raw = await pipe.hgetall(key)
                if not raw:
                    return None
                current = JobRecord.from_hash(raw)
                if current.state is JobState.RUNNING:
                    return current
                pipe.multi()  # type: ignore[no-untyped-call]
                add_delete(pipe, current)
                await pipe.execute()
                await _delete_objects(store, objects, current)
                return None
            except WatchError:
                continue


async def _delete_objects(store: redis.asyncio.Redis, objects: ObjectStore | None, record: JobRecord) -> None:
    if objects is None or not in_object_store(record):
        return
    names = [input_name(record.id), result_name(record.id)]
    try:
        await objects.delete_async(names)
        await forget_async(store, names)
    except (StoreError, RedisError):
        logger.warning("objects of a deleted job left to the reaper", extra={"job_id": record.id})
