"""Every name the service uses in Redis and on the broker.

Key layout (all under ``animegan:``):

=============================  ================================  ===================  ======================
key                            value                             TTL                  written by
=============================  ================================  ===================  ======================
``job:{id}``                   hash, the JobRecord fields        record_ttl_s         api creates, worker
``input:{id}``                 normalized input, raw RGB bytes   input_ttl_s          api; worker deletes
``result:{id}``                encoded output image              result_ttl_s         worker, SET NX (once)
``queued``                     sorted set id -> enqueue time     none (members pruned) api adds, worker removes
``dedup:{sha256}``             job id of an identical request    record/result TTL    api, worker refreshes
                               (by pixels, and by upload bytes)
``idem:{sha256 of key}``       JSON {job_id, fingerprint}        record_ttl_s         api
``workers``                    hash worker id -> JSON heartbeat  none (expiry inside) worker
``stats:service_s``            EWMA of inference seconds         none                 worker
``events:{id}`` (channel)      pub/sub: the job's new state      -                    every state change
=============================  ================================  ===================  ======================

The Celery queue itself is the Redis list ``QUEUE_NAME`` (and its priority lists), on the broker.
"""

from __future__ import annotations

import hashlib

TASK_NAME = "animegan.stylize"
QUEUE_NAME = "animegan"
PREFIX = "animegan:"
QUEUED_KEY = f"{PREFIX}queued"
WORKERS_KEY = f"{PREFIX}workers"
SERVICE_TIME_KEY = f"{PREFIX}stats:service_s"


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def input_key(job_id: str) -> str:
    return f"{PREFIX}input:{job_id}"


def result_key(job_id: str) -> str:
    return f"{PREFIX}result:{job_id}"


def events_channel(job_id: str) -> str:
    """Pub/sub channel on which every state change of the job is announced (message: the new state)."""
    return f"{PREFIX}events:{job_id}"


def dedup_key(digest: str) -> str:
    return f"{PREFIX}dedup:{digest}"


def idempotency_key(client_key: str) -> str:
    # Hashed: the client's key may be long or hold characters we do not want in key names.
    return f"{PREFIX}idem:{hashlib.sha256(client_key.encode()).hexdigest()}"
