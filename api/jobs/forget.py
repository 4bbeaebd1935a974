"""Forgetting a job (DELETE /jobs/{id}): its record, input, result and dedup entries, unless a worker runs it now."""

from __future__ import annotations

import redis.asyncio
from redis.exceptions import WatchError

from jobstore.keys import job_key
from jobstore.records import JobRecord, JobState
from jobstore.transitions import add_delete


async def forget_job(store: redis.asyncio.Redis, record: JobRecord) -> JobRecord | None:
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
                return None
            except WatchError:
                continue
