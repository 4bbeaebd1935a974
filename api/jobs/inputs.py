"""Where a new job's input goes: into the ADMIT script's Redis write (the default), or first into the
object store (ANIMEGAN_S3_BUCKET), which ADMIT then does not repeat.

With a store the input is written before admission, scheduled for deletion at its TTL before that
(``jobstore.blobs.put_input_async``), so nothing is ever left behind: an input whose job admission
did not create (refused, or answered by an earlier job) is deleted at once, and one whose gateway
died meanwhile is deleted by the workers' reaper when its TTL passes. A store that cannot take the
input answers 503 ``store-unavailable`` within its timeouts (ANIMEGAN_S3_TIMEOUT_S): never a 500,
never a hang.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import redis.asyncio
from redis.exceptions import RedisError

from api.problems import broker_unavailable, store_unavailable
from jobstore.blobs import forget_async, input_name, put_input_async
from jobstore.objectstore import ObjectStore, StoreError
from jobstore.records import JobRecord

logger = logging.getLogger(__name__)


async def store(client: redis.asyncio.Redis, objects: ObjectStore | None, record: JobRecord, raw_rgb: bytes) -> bytes:
    """Put the input in the object store if there is one; returns what ADMIT stores in Redis (``b""`` then)."""
    if objects is None:
        return raw_rgb
    try:
        await put_input_async(client, objects, record.id, raw_rgb, record.input_ttl_s)
    except StoreError as exc:
        logger.warning("could not store an upload in the object store: %s", exc)
        raise store_unavailable("storing the upload") from None
    except RedisError:
        raise broker_unavailable("scheduling the upload's deletion") from None
    return b""


@asynccontextmanager
async def kept_if_created(
    client: redis.asyncio.Redis, objects: ObjectStore | None, records: Sequence[JobRecord]
) -> AsyncIterator[list[bool]]:
    """Around admission: the caller appends True once its job(s) were created; otherwise (a refusal
    raised, an earlier job answering) the stored inputs are deleted now."""
    created: list[bool] = []
    try:
        yield created
    finally:
        if objects is not None and not any(created):
            await discard(client, objects, [r.id for r in records])


async def discard(client: redis.asyncio.Redis, objects: ObjectStore, job_ids: Sequence[str]) -> None:
    """Delete inputs no job will read; what fails here stays scheduled for the reaper."""
    names = [input_name(job_id) for job_id in job_ids]
    try:
        await objects.delete_async(names)
        await forget_async(client, names)
    except (StoreError, RedisError):
        logger.warning("unused inputs left to the reaper", extra={"objects": len(names)})
