"""Idempotency-Key: retries of one request map to one job.

The key is remembered (hashed, scoped to the client) for ANIMEGAN_RECORD_TTL_S with a fingerprint
of the request (``jobstore.queue.upload_digest``: image bytes, style, format). The same key
with the same request returns the first job; with a different request it is refused with 422
``idempotency-key-reused`` (as the IETF idempotency-key draft advises). The key is tied to its job
by the job store's ADMIT script in the same step that creates the job, so requests racing with one
key end on one job. If the job a key names is gone before the key, 409 ``idempotency-key-in-use``
asks the client to retry.
"""

from __future__ import annotations

import re

import redis.asyncio

from api.problems import ApiError
from jobstore.keys import idempotency_key
from jobstore.queue import decode_idempotency

HEADER = "Idempotency-Key"
_SANE_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def check_key(value: str) -> str:
    if not _SANE_KEY.match(value):
        detail = f"{HEADER} must be 1 to 255 printable ASCII characters."
        raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["header", HEADER], "msg": detail}]})
    return value


def reused() -> ApiError:
    return ApiError("idempotency-key-reused", f"This {HEADER} was used for a different request.")


async def lookup(redis_client: redis.asyncio.Redis, client: str, key: str, fingerprint: str) -> str | None:
    """The job id an earlier request of this client with this key created, or None for a new key."""
    raw = await redis_client.get(idempotency_key(client, key))
    if raw is None:
        return None
    job_id, seen = decode_idempotency(raw)
    if seen != fingerprint:
        raise reused()
    return job_id


def in_use() -> ApiError:
    return ApiError("idempotency-key-in-use", "The first request with this key is still being accepted; retry.")
