"""Idempotency-Key: retries of one request map to one job.

The key is remembered (hashed) for ANIMEGAN_RECORD_TTL_S with a fingerprint of the request
(``jobstore.fingerprints.upload_digest``: image bytes, style, format). The same key with the same request returns
the first job; with a different request it is refused with 422 ``idempotency-key-reused`` (as the
IETF idempotency-key draft advises). Identical requests racing with one key end on one job anyway:
the second finds the first through deduplication. If the job a key names is gone before the key,
409 ``idempotency-key-in-use`` asks the client to retry.
"""

from __future__ import annotations

import re

import redis.asyncio

from api.problems import ApiError
from jobstore.idempotency import decode_idempotency, encode_idempotency
from jobstore.keys import idempotency_key

HEADER = "Idempotency-Key"
_SANE_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def check_key(value: str) -> str:
    if not _SANE_KEY.match(value):
        detail = f"{HEADER} must be 1 to 255 printable ASCII characters."
        raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["header", HEADER], "msg": detail}]})
    return value


async def lookup(client: redis.asyncio.Redis, key: str, fingerprint: str) -> str | None:
    """The job id an earlier request with this key created, or None for a new key."""
    raw = await client.get(idempotency_key(key))
    if raw is None:
        return None
    job_id, seen = decode_idempotency(raw)
    if seen != fingerprint:
        raise ApiError("idempotency-key-reused", f"This {HEADER} was used for a different request.")
    return job_id


async def claim(client: redis.asyncio.Redis, key: str, fingerprint: str, job_id: str, ttl_s: int) -> str | None:
    """Tie the key to ``job_id`` (the job that answered); if the key is taken, return its job id."""
    value = encode_idempotency(job_id, fingerprint)
    if await client.set(idempotency_key(key), value, nx=True, ex=ttl_s):
        return None
    return await lookup(client, key, fingerprint)
