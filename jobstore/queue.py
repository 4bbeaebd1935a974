"""The fair job queue: atomic admission, round-robin claims across clients, leases.

What each script decides is told in ``jobstore.queue_scripts``, which holds their Lua. This
module builds each call's KEYS and ARGV, parses the replies, and registers the scripts on a
client (``QueueScripts`` blocking, ``AsyncQueueScripts`` asyncio).

Redis Cluster is not supported: the scripts name keys derived from the client and job ids.
"""

from __future__ import annotations

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
        idem_value = f'{{"job_id": "{{JOB}}", "fingerprint": "{fingerprint}"}}'
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
