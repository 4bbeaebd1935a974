"""Admission (backpressure): the one path by which new work enters the queue, for a job, a batch or a video.

``precheck`` refuses early, before anything is decoded: the store's memory budget for each upload
(503 ``store-full``, ``api.jobs.store_budget``), then the queue depth (503 ``queue-full``) and the
client's jobs (429 ``client-quota``). It reads the figures that the authoritative check decides
on, so a full queue costs no decode; it may let a few through that the check then refuses.

The authoritative check is atomic: the job store's ADMIT script (``admit_job``), ADMIT_BATCH
script (``admit_batch``) or ADMIT_VIDEO script (``admit_video``) counts the waiting jobs and the
client's jobs and queues the job(s) in one step, so concurrent submits never pass either limit.
All refuse with the same problems.

A refusal carries a Retry-After computed from the workers' recent service time and the number of
live workers; the same estimate gives the poll hints of queued jobs and batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import redis.asyncio
from redis.exceptions import RedisError

from api.config import ApiSettings
from api.jobs.reader import JobReader
from api.jobs.store_budget import StoreBudget
from api.problems import ApiError, broker_unavailable
from api.tenancy.clients import ClientIdentity
from jobstore.batches import BatchRecord, admit_batch_call, parse_batch_admitted
from jobstore.keys import WAITING_KEY, client_active_key
from jobstore.queue import (
    DEFAULT_SERVICE_S,
    Admitted,
    AsyncQueueScripts,
    Limits,
    admit_call,
    estimate_wait_s,
    parse_admitted,
)
from jobstore.records import JobRecord
from jobstore.videos import AsyncVideoScripts, admit_video_call, parse_video_admitted

RETRY_AFTER_MAX_S = 3600
# Poll hints never ask a client to wait longer than this for a status change.
POLL_HINT_MAX_S = 30


class Admission:
    """Decides whether new jobs may be queued now, queues them, and says how long a client should wait."""

    def __init__(
        self, settings: ApiSettings, client: redis.asyncio.Redis, reader: JobReader, budget: StoreBudget
    ) -> None:
        self.limits = Limits(max_depth=settings.max_queue_depth, max_per_client=settings.max_queued_per_client)
        self.redis = client
        self.scripts = AsyncQueueScripts(client)
        self.video_scripts = AsyncVideoScripts(client)
        self.reader = reader
        self.budget = budget

    async def precheck(self, client: ClientIdentity, upload_sizes: Iterable[int]) -> None:
        """Refuse early (before decoding) when the store has no room or either limit is reached already."""
        for size in upload_sizes:
            await self.budget.check(size)
        await self.check_limits(client)

    async def check_limits(self, client: ClientIdentity, needed: int = 1) -> None:
        """Refuse (503 queue-full, 429 client-quota) unless ``needed`` more jobs fit under both limits now."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(WAITING_KEY)
            pipe.scard(client_active_key(client.id))
            depth, mine = (int(n) for n in await pipe.execute())
        except RedisError:
            raise broker_unavailable("queue depth") from None
        if depth + needed > self.limits.max_depth:
            raise await self.queue_full(depth)
        if mine + needed > self.limits.max_per_client:
            raise await self.client_quota(client, mine)

    async def admit_job(
        self, record: JobRecord, raw_rgb: bytes, client: ClientIdentity, idempotency_key: str | None, fingerprint: str
    ) -> Admitted:
        """ADMIT: the job is created, or answered by an earlier one (deduplicated, replayed), or refused."""
        keys, args = admit_call(record, raw_rgb, self.limits, idempotency_key, fingerprint)
        try:
            admitted = parse_admitted(await self.scripts.admit(keys=keys, args=args))
        except RedisError:
            raise broker_unavailable("storing the job") from None
        await self._refuse_over_limits(admitted.outcome, admitted.count, client)
        return admitted

    async def admit_batch(
        self, batch: BatchRecord, jobs: Sequence[tuple[JobRecord, bytes]], client: ClientIdentity
    ) -> None:
        """ADMIT_BATCH: every job of the batch is queued, or none is and the refusal is raised."""
        keys, args = admit_batch_call(batch, jobs, self.limits)
        try:
            admitted = parse_batch_admitted(await self.scripts.admit_batch(keys=keys, args=args))
        except RedisError:
            raise broker_unavailable("storing the batch") from None
        await self._refuse_over_limits(admitted.outcome, admitted.count, client)

    async def admit_video(
        self, video: JobRecord, segments: Sequence[JobRecord], probe_json: str, client: ClientIdentity
    ) -> None:
        """ADMIT_VIDEO: the video and all of its segments are queued, or none is and the refusal is raised."""
        keys, args = admit_video_call(video, segments, probe_json, self.limits)
        try:
            admitted = parse_video_admitted(await self.video_scripts.admit(keys=keys, args=args))
        except RedisError:
            raise broker_unavailable("storing the video") from None
        await self._refuse_over_limits(admitted.outcome, admitted.count, client)

    async def _refuse_over_limits(self, outcome: str, count: int, client: ClientIdentity) -> None:
        if outcome == "queue-full":
            raise await self.queue_full(count)
        if outcome == "client-quota":
            raise await self.client_quota(client, count)

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

    async def poll_hint(self, jobs_ahead: int) -> int:
        """Whole seconds a client should wait before asking again (Retry-After of a job or batch under way)."""
        wait_s = await self.estimate_wait_s(jobs_ahead)
        return max(1, min(POLL_HINT_MAX_S, math.ceil(wait_s)))


def _seconds(wait_s: float) -> str:
    return str(max(1, min(RETRY_AFTER_MAX_S, math.ceil(wait_s))))
