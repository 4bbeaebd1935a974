"""Where a video job's bytes live: the clip, its probe, the pieces, the result; read by range, never whole.

Redis, the default (``jobstore.keys``): the clip as 1 MiB chunks ``clip:{id}:{n}`` written as the
upload streams in, its probe as JSON ``clipinfo:{id}``, each piece under ``piece:{segment id}``
and the result as 1 MiB chunks ``result:{id}:{n}``. With an object store (the record's ``blobs``
is ``"s3"``): the clip is the object ``input/{id}`` (a multipart upload as it streams in), pieces
``piece/{segment id}``, the result ``result/{id}``; the probe stays in Redis (tens of kB). Each
object is put on the deletion schedule (``blobs:due``) before it is written, as a photo's are.

A process reads a clip through a ``BlockReader``: fixed blocks fetched as the demuxer asks for
them (a chunk key, or a ranged GET), a few kept, so decoding a segment reads its own range and
the index, and holds a few MiB whatever the clip's size. Imports redis, the job store and video.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Final, Protocol

import redis
import redis.asyncio

from jobstore.blobs import input_name, result_name
from jobstore.keys import BLOBS_DUE_KEY, clip_chunk_key, clip_info_key, piece_key, result_chunk_key
from jobstore.objectstore import ObjectStore
from jobstore.records import JobRecord, now
from video.encoding import Encoding, piece_bytes_bound
from video.probe import ClipInfo

CHUNK_BYTES: Final = 1 << 20
# Blocks a reader keeps: the demuxer's position plus the few it seeks back into.
CACHED_BLOCKS: Final = 4
MP4_TYPE: Final = "video/mp4"
CLIP_TYPE: Final = "application/octet-stream"

Pipe = redis.client.Pipeline | redis.asyncio.client.Pipeline
# Block ``index`` of a clip (``CHUNK_BYTES`` each, the last shorter); raises ClipGone when it is missing.
Fetch = Callable[[int], bytes]


class ClipGone(Exception):
    """A chunk or range of the clip is not there any more (expired or deleted)."""


def piece_name(segment_id: str) -> str:
    return f"piece/{segment_id}"


def chunk_count(size: int) -> int:
    return max(1, math.ceil(size / CHUNK_BYTES))


class BlockReader:
    """A ``video.source.RandomAccess`` over ``size`` bytes fetched in blocks by ``fetch(index)``."""

    def __init__(self, size: int, fetch: Fetch, *, block_bytes: int = CHUNK_BYTES) -> None:
        self._size = size
        self._fetch = fetch
        self._block = block_bytes
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self.fetched = 0  # blocks fetched so far (how much of the clip was read)

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, size: int, /) -> bytes:
        end = min(self._size, offset + size)
        parts = []
        while offset < end:
            index, start = divmod(offset, self._block)
            block = self._get(index)
            part = block[start : start + end - offset]
            if not part:
                raise ClipGone(f"block {index} ends early")
            parts.append(part)
            offset += len(part)
        return b"".join(parts)

    def _get(self, index: int) -> bytes:
        block = self._cache.get(index)
        if block is None:
            block = self._fetch(index)
            self.fetched += 1
            self._cache[index] = block
            while len(self._cache) > CACHED_BLOCKS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return block


async def rechunked(chunks: AsyncIterator[bytes], size: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    """The bytes of ``chunks`` in pieces of exactly ``size`` (the last may be shorter)."""
    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


async def store_clip_in_redis(
    client: redis.asyncio.Redis, job_id: str, chunks: AsyncIterator[bytes], ttl_s: int
) -> int:
    """Write the clip's bytes as chunk keys as they arrive; returns their count of bytes."""
    total = 0
    async for index, chunk in _numbered(rechunked(chunks)):
        await client.set(clip_chunk_key(job_id, index), chunk, ex=ttl_s)
        total += len(chunk)
    return total


async def store_clip_in_bucket(
    client: redis.asyncio.Redis, store: ObjectStore, job_id: str, chunks: AsyncIterator[bytes], ttl_s: int
) -> int:
    """Stream the clip's bytes into the object ``input/{id}``, scheduled for deletion first; returns its size."""
    await client.zadd(BLOBS_DUE_KEY, {input_name(job_id): now() + ttl_s})
    total = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal total
        async for chunk in chunks:
            total += len(chunk)
            yield chunk

    await store.put_stream_async(input_name(job_id), counted(), CLIP_TYPE)
    return total


async def _numbered(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    index = 0
    async for chunk in chunks:
        yield index, chunk
        index += 1


def add_forget_clip(pipe: Pipe, job_id: str, size: int) -> None:
    """Delete the clip's chunks and its probe from Redis (object store clips go by the schedule)."""
    pipe.delete(clip_info_key(job_id), *(clip_chunk_key(job_id, n) for n in range(chunk_count(size))))


def add_forget_result(pipe: Pipe, job_id: str, size: int | None) -> None:
    """Delete a video's result chunks from Redis."""
    if size is not None:
        pipe.delete(*(result_chunk_key(job_id, n) for n in range(chunk_count(size))))


def add_forget_pieces(pipe: Pipe, segment_ids: list[str], *, in_bucket: bool) -> None:
    """Delete the pieces: keys from Redis, or objects put on the schedule now."""
    if not segment_ids:
        return
    if in_bucket:
        pipe.zadd(BLOBS_DUE_KEY, {piece_name(s): now() for s in segment_ids})
    else:
        pipe.delete(*(piece_key(s) for s in segment_ids))


def video_bytes_bound(info: ClipInfo) -> int:
    """Most bytes the stylized video of the clip takes (``video.encoding`` caps the encoder's rate): its
    pieces together, and the result's video track (its sound is at most the clip's own bytes)."""
    size = (info.output_width, info.output_height)
    return piece_bytes_bound(size, info.frame_rate, info.duration, info.frame_count)


def part_pending_bytes(frames: int, width: int, height: int) -> int:
    """Most bytes a waiting segment of ``frames`` frames of ``width`` x ``height`` will add: its piece,
    and its share of the result (the frame rate is not on the record: two seconds of buffer at 60 fps)."""
    per_frame = Encoding().max_bits_per_pixel * width * height / 8
    return 2 * math.ceil((frames + 120) * per_frame)


def encode_info(info: ClipInfo) -> str:
    return json.dumps(info.as_dict(), separators=(",", ":"))


def decode_info(raw: bytes | str) -> ClipInfo:
    return ClipInfo.from_dict(json.loads(raw))


class VideoBlobs(Protocol):
    """A worker's view of where one video's bytes are."""

    def clip(self, video: JobRecord) -> BlockReader:
        """The upload, read by range (raises ClipGone when a block is missing)."""

    def write_piece(self, segment: JobRecord, data: bytes) -> None: ...

    def read_piece(self, segment_id: str) -> bytes | None: ...

    def write_result(self, video: JobRecord, data: bytes) -> None: ...


def read_info(client: redis.Redis, video_id: str) -> ClipInfo | None:
    """The probe the gateway kept; None when it expired or was deleted."""
    raw = client.get(clip_info_key(video_id))
    return decode_info(raw) if isinstance(raw, bytes | str) else None


class RedisVideoBlobs:
    """The bytes are Redis values with TTLs: chunk keys, piece keys."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def clip(self, video: JobRecord) -> BlockReader:
        def fetch(index: int) -> bytes:
            block = self.redis.get(clip_chunk_key(video.id, index))
            if not isinstance(block, bytes):
                raise ClipGone(f"chunk {index} of the clip is gone")
            return block

        return BlockReader(video.clip_bytes or 0, fetch)

    def write_piece(self, segment: JobRecord, data: bytes) -> None:
        self.redis.set(piece_key(segment.id), data, ex=segment.input_ttl_s)

    def read_piece(self, segment_id: str) -> bytes | None:
        data = self.redis.get(piece_key(segment_id))
        return data if isinstance(data, bytes) else None

    def write_result(self, video: JobRecord, data: bytes) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for index, start in enumerate(range(0, max(1, len(data)), CHUNK_BYTES)):
            pipe.set(result_chunk_key(video.id, index), data[start : start + CHUNK_BYTES], ex=video.result_ttl_s)
        pipe.execute()


class ObjectVideoBlobs:
    """The bytes are objects in the bucket; Redis holds their deletion schedule (and the probe)."""

    def __init__(self, client: redis.Redis, store: ObjectStore) -> None:
        self.redis = client
        self.store = store

    def clip(self, video: JobRecord) -> BlockReader:
        size = video.clip_bytes or 0

        def fetch(index: int) -> bytes:
            start = index * CHUNK_BYTES
            block = self.store.get_range(input_name(video.id), start, min(size, start + CHUNK_BYTES))
            if block is None:
                raise ClipGone("the clip's object is gone")
            return block

        return BlockReader(size, fetch)

    def write_piece(self, segment: JobRecord, data: bytes) -> None:
        self.redis.zadd(BLOBS_DUE_KEY, {piece_name(segment.id): now() + segment.input_ttl_s})
        self.store.put(piece_name(segment.id), data, MP4_TYPE)

    def read_piece(self, segment_id: str) -> bytes | None:
        return self.store.get(piece_name(segment_id))

    def write_result(self, video: JobRecord, data: bytes) -> None:
        self.redis.zadd(BLOBS_DUE_KEY, {result_name(video.id): now() + video.result_ttl_s})
        self.store.put(result_name(video.id), data, MP4_TYPE)


async def result_chunks(
    client: redis.asyncio.Redis, job_id: str, size: int, start: int = 0, end: int | None = None
) -> AsyncIterator[bytes]:
    """Bytes ``start`` up to ``end`` (exclusive; default the end) of a video's result in Redis, a chunk at
    a time. Raises ClipGone when a chunk expired meanwhile."""
    end = size if end is None else min(size, end)
    for index in _chunk_range(start, end):
        data = await client.get(result_chunk_key(job_id, index))
        if not isinstance(data, bytes):
            raise ClipGone(f"chunk {index} of the result is gone")
        first = index * CHUNK_BYTES
        yield data[max(0, start - first) : end - first]


def _chunk_range(start: int, end: int) -> Iterator[int]:
    if end > start:
        yield from range(start // CHUNK_BYTES, (end - 1) // CHUNK_BYTES + 1)
