"""The store's memory budget: refuse new work (503 ``store-full``) before Redis would run out of memory.

Redis runs with ``maxmemory`` and ``noeviction``: past the bound it refuses writes, and a refused
write in the middle of a job (its result, its state) would lose the photo. So admission looks ahead:
a job is admitted only if what Redis holds now, plus the results still to be written by the jobs
already admitted (waiting or running), plus this job's own input, result and record, fit in the
budget with a margin. The budget is Redis's ``maxmemory``, or ANIMEGAN_STORE_BUDGET_BYTES when
Redis has none; with neither, nothing is checked.

Sizes are bounds, not guesses: a result is at most ``RESULT_BYTES_PER_PIXEL`` bytes per pixel of the
job (width x height on its record; an encoded RGB image is never much bigger than its raw pixels), a
running job is counted at the largest size the gateway lets through (ANIMEGAN_MAX_SIDE squared).

``INFO memory`` and the in-flight figures are read at most once per ``REFRESH_S``, so a flood of
submissions does not turn into a flood of INFO calls; what this process admitted since the last
reading is added to it, so the flood cannot overshoot between two readings either.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import redis.asyncio
from redis.exceptions import RedisError

from api.config import ApiSettings
from api.problems import ApiError, broker_unavailable
from jobstore.heartbeats import live_heartbeats
from jobstore.keys import WAITING_KEY, WORKERS_KEY, job_key
from jobstore.records import JobKind
from jobstore.video_blobs import part_pending_bytes

REFRESH_S = 1.0
RGB_BYTES_PER_PIXEL = 3
# Raw RGB plus the allocator's rounding of a large value (jemalloc size classes are at most 25 % apart).
RESULT_BYTES_PER_PIXEL = 3.75
# A job's record hash, its dedup and idempotency keys, its Celery message and pub/sub: a few kB.
RECORD_BYTES = 8 * 1024
# Kept free for what admission does not count: client buffers, heartbeats, Redis's own bookkeeping.
MARGIN_SHARE = 0.05
MIN_MARGIN_BYTES = 256 * 1024
SIZED_WAITING = 256


@dataclass(frozen=True)
class StoreReading:
    """What Redis held and owed at one moment."""

    used_memory: int
    dataset_bytes: int
    maxmemory: int
    pending_result_bytes: int
    taken_at: float


class StoreBudget:
    """Decides whether the store has room for one more job."""

    def __init__(self, settings: ApiSettings, client: redis.asyncio.Redis) -> None:
        self.redis = client
        self.fallback_budget = settings.store_budget_bytes
        self.result_ttl_s = settings.result_ttl_s
        self.largest_job_pixels = settings.max_side * settings.max_side
        # With an object store (ANIMEGAN_S3_BUCKET) inputs and results are not Redis's to hold.
        self.images_in_redis = not settings.object_store_enabled
        self._reading: StoreReading | None = None
        self._admitted_since_reading = 0
        self._lock = asyncio.Lock()

    def job_footprint(self, incoming_bytes: int) -> int:
        """Most that one more job adds to the store: its normalized input, its result and its record
        (its record only when the images live in the object store)."""
        if not self.images_in_redis:
            return RECORD_BYTES
        stored_input = max(incoming_bytes, RGB_BYTES_PER_PIXEL * self.largest_job_pixels)
        return stored_input + self.result_bound(self.largest_job_pixels) + RECORD_BYTES

    @staticmethod
    def result_bound(pixels: int) -> int:
        return math.ceil(RESULT_BYTES_PER_PIXEL * pixels)

    async def check(self, incoming_bytes: int) -> None:
        """Pass, or raise 503 ``store-full`` (with Retry-After) when this job might not fit in the budget."""
        await self.check_footprint(self.job_footprint(incoming_bytes))

    async def check_footprint(self, footprint: int) -> None:
        """Pass, or raise 503 ``store-full``, for work that adds at most ``footprint`` bytes to the store
        (a video's: its clip as it streams in, then its pieces and result, ``api.videos.submit``)."""
        reading = await self._current()
        budget = reading.maxmemory or self.fallback_budget
        if not budget:
            return
        committed = reading.used_memory + reading.pending_result_bytes + self._admitted_since_reading
        allowed = budget - max(MIN_MARGIN_BYTES, int(budget * MARGIN_SHARE))
        if committed + footprint <= allowed:
            self._admitted_since_reading += footprint
            return
        raise self._refusal(reading, budget, committed, footprint, allowed)

    def _refusal(self, reading: StoreReading, budget: int, committed: int, footprint: int, allowed: int) -> ApiError:
        deficit = committed + footprint - allowed
        # Results and records leave the store as their TTL passes. Written evenly over the last TTL, the
        # stored data frees at dataset / TTL bytes per second; the deficit is gone after that share of the TTL.
        dataset = max(1, reading.dataset_bytes)
        wait_s = max(1, min(self.result_ttl_s, math.ceil(self.result_ttl_s * deficit / dataset)))
        mib = 1024 * 1024
        detail = (
            f"The job store is near its memory budget ({reading.used_memory / mib:.0f} MiB used, "
            f"{reading.pending_result_bytes / mib:.0f} MiB owed to admitted jobs, budget {budget / mib:.0f} MiB); "
            f"retry in {wait_s} s."
        )
        if footprint > allowed:
            detail = f"One job needs up to {footprint / mib:.1f} MiB but the store's budget is {budget / mib:.1f} MiB."
        return ApiError(
            "store-full",
            detail,
            headers={"Retry-After": str(wait_s)},
            extra={"used_memory": reading.used_memory, "budget": budget},
        )

    async def _current(self) -> StoreReading:
        reading = self._reading
        if reading is not None and time.monotonic() - reading.taken_at < REFRESH_S:
            return reading
        async with self._lock:
            reading = self._reading
            if reading is None or time.monotonic() - reading.taken_at >= REFRESH_S:
                try:
                    reading = await self._read()
                except RedisError:
                    raise broker_unavailable("store memory") from None
                self._reading, self._admitted_since_reading = reading, 0
            return reading

    def _pending(self, width: bytes | None, height: bytes | None, kind: bytes | None, frames: bytes | None) -> int:
        """What a waiting job will still write: a photo its result; a video's segment its piece and its share
        of the video's result (``jobstore.video_blobs``); a join nothing more."""
        if width is None or height is None:
            return 0
        if kind == JobKind.SEGMENT.value.encode() and frames is not None:
            return part_pending_bytes(int(frames), int(width), int(height))
        if kind == JobKind.JOIN.value.encode():
            return 0
        return self.result_bound(int(width) * int(height))

    async def _read(self) -> StoreReading:
        memory = await self.redis.info("memory")
        waiting = await self.redis.llen(WAITING_KEY)
        # The sizes of the first jobs in line are read from their records; any beyond are counted at the
        # largest size, so a long queue costs one bounded pipeline a second, not one HMGET per job.
        ids = await self.redis.lrange(WAITING_KEY, 0, SIZED_WAITING - 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for member in ids:
                key = job_key(member.decode() if isinstance(member, bytes) else str(member))
                pipe.hmget(key, ["width", "height", "kind", "frames"])
            pipe.hgetall(WORKERS_KEY)
            *sizes, workers = await pipe.execute()
        pending = sum(self._pending(*fields) for fields in sizes)
        # A running job has left the waiting list; each live worker process runs at most one.
        unsized = max(0, int(waiting) - len(ids)) + len(live_heartbeats(workers))
        pending += unsized * self.result_bound(self.largest_job_pixels)
        if not self.images_in_redis:
            pending = 0
        used = int(memory["used_memory"])
        return StoreReading(
            used_memory=used,
            dataset_bytes=int(memory.get("used_memory_dataset", used)),
            maxmemory=int(memory.get("maxmemory", 0)),
            pending_result_bytes=pending,
            taken_at=time.monotonic(),
        )
