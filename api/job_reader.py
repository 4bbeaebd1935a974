"""The gateway's reads of the job store: records, queue positions, results, live workers.

A record found running past its deadline (its worker vanished without trace) is ended here as
``worker-lost``, atomically against a late write from the worker, so a reader never waits forever.
"""

from __future__ import annotations

import logging

import redis.asyncio
from redis.exceptions import WatchError

from jobstore.deadlines import STALE_DETAIL, is_stale
from jobstore.errors import ErrorCode
from jobstore.heartbeats import Heartbeat, live_heartbeats
from jobstore.ids import is_job_id
from jobstore.keys import QUEUED_KEY, SERVICE_TIME_KEY, WORKERS_KEY, job_key, result_key
from jobstore.records import JobRecord
from jobstore.states import JobState
from jobstore.transitions import add_mark_failed

logger = logging.getLogger(__name__)


class JobReader:
    """Reads jobs and what the workers publish, from the asyncio Redis client of the gateway."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.redis = client

    async def read(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when the id is not one of ours or the job is unknown or expired."""
        if not is_job_id(job_id):
            return None
        raw = await self.redis.hgetall(job_key(job_id))
        record = JobRecord.from_hash(raw) if raw else None
        if record is not None and is_stale(record):
            return await self._end_stale(job_id)
        return record

    async def _end_stale(self, job_id: str) -> JobRecord | None:
        """Fail a job still running past its deadline (its worker vanished); atomic against late writers."""
        key = job_key(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                raw = await pipe.hgetall(key)
                record = JobRecord.from_hash(raw) if raw else None
                if record is not None and is_stale(record):
                    pipe.multi()  # type: ignore[no-untyped-call]
                    add_mark_failed(pipe, record, ErrorCode.WORKER_LOST, STALE_DETAIL)
                    await pipe.execute()
                    logger.warning("job ran past its deadline; marked failed", extra={"job_id": job_id})
            except WatchError:
                pass  # someone else changed the job meanwhile: read what they wrote
        raw = await self.redis.hgetall(key)
        return JobRecord.from_hash(raw) if raw else None

    async def position(self, record: JobRecord) -> int | None:
        """1 for the next job to start, None once the job has left the queue."""
        if record.state is not JobState.QUEUED:
            return None
        rank = await self.redis.zrank(QUEUED_KEY, record.id)
        return rank + 1 if isinstance(rank, int) else None

    async def read_result(self, job_id: str) -> bytes | None:
        data = await self.redis.get(result_key(job_id))
        return data.encode() if isinstance(data, str) else data

    async def has_result(self, job_id: str) -> bool:
        return bool(await self.redis.exists(result_key(job_id)))

    async def live_workers(self) -> list[Heartbeat]:
        raw = await self.redis.hgetall(WORKERS_KEY)
        return live_heartbeats(raw)

    async def waiting_count(self) -> int:
        """Jobs listed as waiting (the ``queued`` sorted set)."""
        return int(await self.redis.zcard(QUEUED_KEY))

    async def service_time_s(self) -> float | None:
        """The workers' recent average inference seconds, None before the first job."""
        value = await self.redis.get(SERVICE_TIME_KEY)
        return float(value) if value else None
