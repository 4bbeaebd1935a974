"""Admission (backpressure): refuse new work past the global and per-client limits, estimate waits.

The authoritative check is atomic: the job store's ADMIT script (``jobstore.queue``) counts the
waiting jobs and the client's jobs and queues the job in one step, so concurrent submits never pass
either limit. ``precheck`` reads the same figures earlier, before an upload is decoded, so a full
queue costs no decode; it may let a few through that ADMIT then refuses.

A refusal carries a Retry-After computed from the workers' recent service time and the number of
live workers; the same estimate gives the poll hints of queued jobs.
"""

from __future__ import annotations

import math

import redis.asyncio
from redis.exceptions import RedisError

from api.clients import ClientIdentity
from api.config import ApiSettings
from api.job_reader import JobReader
from api.problems import ApiError, broker_unavailable
from jobstore.keys import WAITING_KEY, client_active_key
from jobstore.queue import DEFAULT_SERVICE_S, Limits, estimate_wait_s

RETRY_AFTER_MAX_S = 3600


class Admission:
    """Decides whether a new job may be queued now, and how long a refused client should wait."""

    def __init__(self, settings: ApiSettings, client: redis.asyncio.Redis, reader: JobReader) -> None:
        self.limits = Limits(max_depth=settings.max_queue_depth, max_per_client=settings.max_queued_per_client)
        self.redis = client
        self.reader = reader

    async def precheck(self, client: ClientIdentity) -> None:
        """Refuse early (before decoding) when either limit is reached already."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(WAITING_KEY)
            pipe.scard(client_active_key(client.id))
            depth, mine = (int(n) for n in await pipe.execute())
        except RedisError:
            raise broker_unavailable("queue depth") from None
        if depth >= self.limits.max_depth:
            raise await self.queue_full(depth)
        if mine >= self.limits.max_per_client:
            raise await self.client_quota(client, mine)

    async def queue_full(self, depth: int) -> ApiError:
        """503 queue-full: retry when the jobs waiting now would have drained."""
        retry_after = _seconds(await self.estimate_wait_s(depth))
        detail = f"{depth} jobs are waiting, the limit is {self.limits.max_depth}; retry in {retry_after} s."
        return ApiError("queue-full", detail, headers={"Retry-After": retry_after}, extra={"queue_depth": depth})

    async def client_quota(self, client: ClientIdentity, count: int) -> ApiError:
        """429 client-quota: retry when the client's first job should have ended and freed a slot."""
        ahead = await self.reader.first_position_of(client.id)
        retry_after = _seconds(await self.estimate_wait_s(ahead - 1 if ahead else 0))
        detail = (
            f"You have {count} jobs queued or running, the limit is {self.limits.max_per_client}; "
            f"retry in {retry_after} s."
        )
        headers = {"Retry-After": retry_after}
        return ApiError("client-quota", detail, headers=headers, extra={"jobs": count})

    async def estimate_wait_s(self, jobs_ahead: int) -> float:
        """Seconds until a job with ``jobs_ahead`` before it would finish, from recent service times."""
        service_s = await self.reader.service_time_s()
        workers = len(await self.reader.live_workers())
        return estimate_wait_s(jobs_ahead, service_s or DEFAULT_SERVICE_S, workers)


def _seconds(wait_s: float) -> str:
    return str(max(1, min(RETRY_AFTER_MAX_S, math.ceil(wait_s))))
