"""Admission (backpressure): refuse new work while the queue is full, and estimate waits honestly.

A full queue answers 503 ``queue-full`` with a Retry-After computed from the workers' recent
service time and the number of live workers; the same estimate gives the poll hints of queued jobs.
"""

from __future__ import annotations

import math

import redis.asyncio
from redis.exceptions import RedisError

from api.config import ApiSettings
from api.job_reader import JobReader
from api.problems import ApiError, broker_unavailable
from jobstore.keys import QUEUED_KEY
from jobstore.service_time import DEFAULT_SERVICE_S, estimate_wait_s
from jobstore.transitions import add_prune_waiting

RETRY_AFTER_MAX_S = 3600


class Admission:
    """Decides whether a new job may be queued now."""

    def __init__(self, settings: ApiSettings, client: redis.asyncio.Redis, reader: JobReader) -> None:
        self.max_queue_depth = settings.max_queue_depth
        self.record_ttl_s = settings.record_ttl_s
        self.redis = client
        self.reader = reader

    async def check_capacity(self) -> None:
        """Refuse new work while ANIMEGAN_MAX_QUEUE_DEPTH jobs wait (503 with an honest Retry-After)."""
        try:
            pipe = self.redis.pipeline()
            add_prune_waiting(pipe, self.record_ttl_s)
            pipe.zcard(QUEUED_KEY)
            depth = int((await pipe.execute())[1])
            if depth < self.max_queue_depth:
                return
            wait_s = await self.estimate_wait_s(depth)
        except RedisError:
            raise broker_unavailable("queue depth") from None
        retry_after = str(min(RETRY_AFTER_MAX_S, math.ceil(wait_s)))
        detail = f"{depth} jobs are waiting, the limit is {self.max_queue_depth}; retry in {retry_after} s."
        raise ApiError("queue-full", detail, headers={"Retry-After": retry_after}, extra={"queue_depth": depth})

    async def estimate_wait_s(self, jobs_ahead: int) -> float:
        """Seconds until a job with ``jobs_ahead`` before it would finish, from recent service times."""
        service_s = await self.reader.service_time_s()
        workers = len(await self.reader.live_workers())
        return estimate_wait_s(jobs_ahead, service_s or DEFAULT_SERVICE_S, workers)
