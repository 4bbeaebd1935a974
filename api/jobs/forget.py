"""Forgetting a job (DELETE /jobs/{id}): its record, input, result and dedup entries, unless a worker runs it now.

A video is forgotten with its parts, clip, pieces and result (``jobstore.videos.add_video_forget``);
it runs from the claim of its first segment until its join ends it.
"""

from __future__ import annotations

import redis.asyncio
from redis.exceptions import WatchError

from jobstore.keys import job_key
from jobstore.records import JobKind, JobRecord, JobState
from jobstore.transitions import add_delete
from jobstore.videos import add_video_forget, part_ids


async def forget_job(store: redis.asyncio.Redis, record: JobRecord) -> JobRecord | None:
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
                return None
            except WatchError:
                continue


async def _part_running(pipe: redis.asyncio.client.Pipeline, part_keys: list[str]) -> bool:
    """True when a part of the video was claimed a moment ago (before the video's record says so)."""
    for part in part_keys:
        if await pipe.hget(part, "state") == JobState.RUNNING.value.encode():
            return True
    return False
