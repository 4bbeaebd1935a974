"""Where the gateway puts an upload as it streams in, and how it probes it there without reading it whole.

The clip goes where the job's bytes go (``jobstore.video_blobs``): 1 MiB chunk keys in Redis, or,
with ANIMEGAN_S3_BUCKET, one object written by a multipart upload, part after part. It is then
probed in place (``video.probe.inspect_clip`` over a ``BlockReader``): a worker thread reads the
blocks the demuxer asks for, from Redis through the event loop or from the bucket by ranged
GETs, a few MiB at a time. So the gateway's memory for a clip is a chunk or a part, whatever the
clip's size. A clip that is refused is deleted at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import anyio.from_thread
import redis.asyncio

from jobstore.blobs import input_name
from jobstore.keys import BLOBS_DUE_KEY, clip_chunk_key
from jobstore.objectstore import ObjectStore
from jobstore.records import now
from jobstore.video_blobs import (
    CHUNK_BYTES,
    BlockReader,
    ClipGone,
    Fetch,
    chunk_count,
    store_clip_in_bucket,
    store_clip_in_redis,
)
from video.probe import ClipInfo, Limits, inspect_clip


@dataclass(frozen=True)
class StoredClip:
    """An upload where the job's bytes go: its size and the sha256 of its bytes."""

    job_id: str
    size: int
    digest: str


class ClipStore:
    """Writes, probes and discards uploads for one gateway (the app's Redis client, its bucket if any)."""

    def __init__(
        self, client: redis.asyncio.Redis, objects: ObjectStore | None, *, ttl_s: int, probes: int = 2
    ) -> None:
        self.redis = client
        self.objects = objects
        self.ttl_s = ttl_s
        # Probes run in threads (the demuxer is blocking); a few at a time bound their memory.
        self.probes = anyio.CapacityLimiter(probes)

    @property
    def in_bucket(self) -> bool:
        return self.objects is not None

    async def write(self, job_id: str, chunks: AsyncIterator[bytes]) -> StoredClip:
        """Store the clip's bytes as they arrive (hashing them on the way). When ``chunks`` raises (a refusal
        while streaming, a client gone), what was written is deleted and the error goes on."""
        digest = hashlib.sha256()
        received = 0

        async def hashed() -> AsyncIterator[bytes]:
            nonlocal received
            async for chunk in chunks:
                digest.update(chunk)
                received += len(chunk)
                yield chunk

        try:
            if self.objects is not None:
                size = await store_clip_in_bucket(self.redis, self.objects, job_id, hashed(), self.ttl_s)
            else:
                size = await store_clip_in_redis(self.redis, job_id, hashed(), self.ttl_s)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.discard(job_id, received + CHUNK_BYTES)
            raise
        return StoredClip(job_id, size, digest.hexdigest())

    async def probe(self, clip: StoredClip, limits: Limits) -> ClipInfo:
        """Probe the stored clip (raises ``video.errors``; ClipGone when it vanished meanwhile)."""
        reader = BlockReader(clip.size, self._fetcher(clip))
        return await anyio.to_thread.run_sync(inspect_clip, reader, limits, limiter=self.probes)

    def _fetcher(self, clip: StoredClip) -> Fetch:
        objects = self.objects
        if objects is not None:

            def ranged(index: int) -> bytes:
                start = index * CHUNK_BYTES
                block = objects.get_range(input_name(clip.job_id), start, min(clip.size, start + CHUNK_BYTES))
                if block is None:
                    raise ClipGone("the clip's object is gone")
                return block

            return ranged

        def chunk(index: int) -> bytes:
            # Called from the probe's thread: the read itself runs on the event loop, on the app's client.
            block = anyio.from_thread.run(self._get, clip_chunk_key(clip.job_id, index))
            if not isinstance(block, bytes):
                raise ClipGone(f"chunk {index} of the clip is gone")
            return block

        return chunk

    async def _get(self, key: str) -> bytes | None:
        value = await self.redis.get(key)
        return value if isinstance(value, bytes) else None

    async def discard(self, job_id: str, size: int) -> None:
        """Delete a refused upload of at most ``size`` bytes now."""
        if self.objects is not None:
            await self.redis.zadd(BLOBS_DUE_KEY, {input_name(job_id): now()})
            await self.objects.delete_async([input_name(job_id)])
            return
        await self.redis.delete(*(clip_chunk_key(job_id, n) for n in range(chunk_count(size))))
