"""The fair job queue: atomic admission, round-robin claims across clients, leases, waits.

What each script decides is told in ``jobstore.queue_scripts``, which holds their Lua. This
module builds each call's KEYS and ARGV, parses the replies, and registers the scripts on a
client (``QueueScripts`` blocking, ``AsyncQueueScripts`` asyncio). With them, what admission
compares (the request and upload digests, the value stored under an Idempotency-Key) and the
wait a position in the queue means (the service-time average the workers keep).

Redis Cluster is not supported: the scripts name keys derived from the client and job ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script

from jobstore.keys import (
    LEASES_KEY,
    ROUND_KEY,
    WAITING_KEY,
    client_active_key,
    client_queue_key,
    dedup_key,
    idempotency_key,
    input_key,
    job_key,
)
from jobstore.queue_scripts import ADMIT, ADMIT_BATCH, CLAIM, EXPIRE, POSITION, RENEW
from jobstore.records import JobRecord, as_text


def request_digest(raw_rgb: bytes, width: int, height: int, style: str, fmt: str) -> str:
    """Identity of a job for deduplication: the normalized pixels plus what was asked of them."""
    h = hashlib.sha256(raw_rgb)
    h.update(f"|{width}x{height}|{style}|{fmt}".encode())
    return h.hexdigest()


def upload_digest(
    upload: bytes, style: str, fmt: str, max_side: int, mode: str = "scene", crop: str | None = None
) -> str:
    """Identity of an upload before decoding: the same bytes always normalize to the same pixels.

    Lets the gateway answer a repeated upload without decoding it again, and doubles as the
    request fingerprint of an Idempotency-Key. ``mode`` and ``crop`` (its canonical ``x,y,w,h``)
    choose which pixels the bytes normalize to, so they are part of it.
    """
    h = hashlib.sha256(upload)
    h.update(f"|upload|{style}|{fmt}|{max_side}".encode())
    if mode != "scene" or crop is not None:
        # Scene mode keeps the digest it always had: fingerprints stored before portrait mode
        # existed (dedup entries, Idempotency-Keys) still match after an upgrade.
        h.update(f"|{mode}|{crop or 'centre'}".encode())
    return h.hexdigest()


def encode_idempotency(job_id: str, fingerprint: str) -> str:
    """The value stored under an Idempotency-Key: the job it names and the request's fingerprint."""
    return json.dumps({"job_id": job_id, "fingerprint": fingerprint})


def decode_idempotency(raw: bytes | str) -> tuple[str, str]:
    """``(job_id, fingerprint)`` of a stored value."""
    value: dict[str, Any] = json.loads(raw)
    return str(value["job_id"]), str(value["fingerprint"])


@dataclass(frozen=True)
class Limits:
    """What admission enforces: the global queue depth and each client's jobs queued or running."""

    max_depth: int
    max_per_client: int


@dataclass(frozen=True)
class Admitted:
    """What ADMIT decided: ``outcome`` is created, deduplicated, replayed, queue-full,
    client-quota or idempotency-key-reused; ``job_id`` the job that answers (empty when
    refused); ``count`` the depth (created, queue-full) or the client's jobs (client-quota)."""

    outcome: str
    job_id: str
    count: int = 0


def admit_call(
    record: JobRecord, raw_rgb: bytes, limits: Limits, idempotency: str | None, fingerprint: str
) -> tuple[list[str], list[bytes | str | int]]:
    """KEYS and ARGV of ADMIT for a new job (its record names the client and both digests)."""
    client = record.client
    keys = [
        WAITING_KEY,
        client_queue_key(client),
        ROUND_KEY,
        client_active_key(client),
        job_key(record.id),
        input_key(record.id),
        dedup_key(client, record.digest),
        dedup_key(client, record.upload_digest or fingerprint),
    ]
    idem_value = ""
    if idempotency is not None:
        keys.append(idempotency_key(client, idempotency))
        # The script substitutes the job that answers (this one, or the identical one found).
        idem_value = encode_idempotency("{JOB}", fingerprint)
    fields: list[bytes | str | int] = [x for pair in record.to_hash().items() for x in pair]
    args: list[bytes | str | int] = [
        record.id,
        client,
        limits.max_depth,
        limits.max_per_client,
        record.input_ttl_s,
        record.record_ttl_s,
        raw_rgb,
        fingerprint,
        idem_value,
        0 if record.callback_url else 1,
        *fields,
    ]
    return keys, args


def parse_admitted(reply: Sequence[bytes | str]) -> Admitted:
    outcome, job_id, *rest = (as_text(x) for x in reply)
    return Admitted(outcome, job_id, int(rest[0]) if rest and rest[0] else 0)


@dataclass(frozen=True)
class Claimed:
    """What CLAIM took: ``outcome`` claimed (now running, leased) or exhausted (out of attempts)."""

    outcome: str
    job_id: str


def claim_call(holder: str, at: float, lease_s: float, max_attempts: int) -> tuple[list[str], list[str | float | int]]:
    return [WAITING_KEY, ROUND_KEY, LEASES_KEY], [holder, repr(at), repr(at + lease_s), max_attempts]


def parse_claimed(reply: Sequence[bytes | str] | None) -> Claimed | None:
    if not reply:
        return None
    outcome, job_id = (as_text(x) for x in reply)
    return Claimed(outcome, job_id)


def renew_call(job_id: str, holder: str, until: float) -> tuple[list[str], list[str]]:
    return [LEASES_KEY, job_key(job_id)], [job_id, holder, repr(until)]


def expire_call(
    job_id: str, at: float, max_attempts: int, holder: str | None = None
) -> tuple[list[str], list[str | int]]:
    args: list[str | int] = [job_id, repr(at), max_attempts, *([holder] if holder else [])]
    return [WAITING_KEY, ROUND_KEY, LEASES_KEY], args


def position_call(record: JobRecord) -> tuple[list[str], list[str]]:
    return position_call_for(record.id, record.client)


def position_call_for(job_id: str, client: str) -> tuple[list[str], list[str]]:
    return [ROUND_KEY], [job_id, client]


# Weight of the newest sample in the service-time average used for Retry-After.
SERVICE_TIME_ALPHA = 0.3
DEFAULT_SERVICE_S = 5.0


def next_service_time(previous: bytes | str | None, sample_s: float) -> float:
    """Exponentially weighted mean of inference seconds (read-modify-write; races only blur it)."""
    if previous is None:
        return sample_s
    return (1 - SERVICE_TIME_ALPHA) * float(previous) + SERVICE_TIME_ALPHA * sample_s


def estimate_wait_s(jobs_ahead: int, service_s: float, workers: int) -> float:
    """Seconds until a job with ``jobs_ahead`` before it finishes, given ``workers`` in parallel."""
    return (jobs_ahead + 1) * service_s / max(1, workers)


class QueueScripts:
    """The scripts registered on one blocking client (the workers, tools, tests)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.admit: Script = client.register_script(ADMIT)
        self.admit_batch: Script = client.register_script(ADMIT_BATCH)
        self.claim: Script = client.register_script(CLAIM)
        self.renew: Script = client.register_script(RENEW)
        self.expire: Script = client.register_script(EXPIRE)
        self.position: Script = client.register_script(POSITION)


class AsyncQueueScripts:
    """The scripts registered on one asyncio client (the gateway)."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.admit: AsyncScript = client.register_script(ADMIT)
        self.admit_batch: AsyncScript = client.register_script(ADMIT_BATCH)
        self.position: AsyncScript = client.register_script(POSITION)


def ids(reply: Any) -> list[str]:
    """Job ids from a list reply (ZRANGE, LRANGE)."""
    return [as_text(x) for x in reply]
