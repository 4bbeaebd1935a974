"""Every name the service uses in Redis and on the broker.

Key layout (all under ``animegan:``):

=============================  ================================  ===================  ======================
key                            value                             TTL                  written by
=============================  ================================  ===================  ======================
``job:{id}``                   hash, the JobRecord fields        record_ttl_s         api creates, worker
``input:{id}``                 normalized input, raw RGB bytes   input_ttl_s          api; worker deletes
                               (not with an object store)
``result:{id}``                encoded output image              result_ttl_s         worker, SET NX (once)
                               (not with an object store)
``clip:{id}:{n}``              a video's upload, chunk n of      input_ttl_s          api as the body streams
                               1 MiB (not with an object store)                       in; the job's end deletes
``clipinfo:{id}``              JSON: the probed clip (frame      input_ttl_s          api; the job's end deletes
                               table, sizes, sound; video.probe)
``piece:{segment id}``         a segment's stylized MP4 piece    input_ttl_s          worker; the join, or the
                               (not with an object store)                             video's end, deletes
``result:{id}:{n}``            a video's MP4, chunk n of 1 MiB   result_ttl_s         worker (the join)
                               (not with an object store)
``blobs:due``                  sorted set object name ->         none (members        api before each PUT,
                               unix time to delete it            removed once         worker, every job's
                               (``input/{id}``, ``result/{id}``, deleted)             end; the reaper
                               ``piece/{segment id}``;
                               jobstore.blobs)                                        deletes what is due
``reaper``                     lock: the worker deleting due     a few seconds        worker (blob reaper)
                               objects now
``waiting``                    list of job ids, arrival order    none (members removed) api adds, worker claims
                               (the queue depth: LLEN, KEDA's list)
``cq:{client}``                list: one client's waiting jobs   none (emptied)       api adds, worker claims
``round``                      list: clients with waiting jobs,  none                 api adds, worker rotates
                               in round-robin order
``active:{client}``            set: the client's jobs queued or  record_ttl_s         api adds, terminal removes
                               running (the per-client quota)
``leases``                     sorted set running id -> expiry   none (members removed) worker claims, renews
``dedup:{client}:{sha256}``    job id of an identical request    record/result TTL    api, worker refreshes
                               of the same client (by pixels,
                               and by upload bytes)
``idem:{client}:{sha256}``     JSON {job_id, fingerprint}        record_ttl_s         api
``sweeper``                    lock: the worker sweeping now     a few seconds        worker
``rate:{client}``              GCRA arrival time of the client's until the burst refills api
                               requests (ANIMEGAN_RATE_LIMIT)
``workers``                    hash worker id -> JSON heartbeat  none (expiry inside) worker
``stats:service_s``            EWMA of inference seconds         none                 worker
``events:{id}`` (channel)      pub/sub: the job's new state      -                    every state change
``batch:{id}``                 hash, one batch (client, created  record_ttl_s, again  api creates; each job's
                               at, callback, entries as JSON;    from every job's end end refreshes the TTL
                               jobstore.batches)
``batch:{id}:pending``         set: the batch's jobs not ended   record_ttl_s         api adds, terminal removes
                               (the last removal schedules
                               ``batch.completed``)
``webhook:{delivery id}``      hash, one webhook delivery        pending: 7 days;     scheduled with the
                               (event, url, job, attempt, body,  ended: ..._WEBHOOK_  terminal state change;
                               last error; jobstore.webhooks)    KEEP_S               worker sender updates
``webhooks:due``               sorted set delivery id -> unix    none (members        same; a claim moves
                               time it is due (or lease ends)    removed at the end)  the time to the lease end
=============================  ================================  ===================  ======================

The Celery queue itself is the Redis list ``QUEUE_NAME`` (and its priority lists), on the broker.
"""

from __future__ import annotations

import hashlib

TASK_NAME = "animegan.stylize"
QUEUE_NAME = "animegan"
PREFIX = "animegan:"
WAITING_KEY = f"{PREFIX}waiting"
ROUND_KEY = f"{PREFIX}round"
LEASES_KEY = f"{PREFIX}leases"
SWEEPER_LOCK_KEY = f"{PREFIX}sweeper"
WORKERS_KEY = f"{PREFIX}workers"
SERVICE_TIME_KEY = f"{PREFIX}stats:service_s"
WEBHOOKS_DUE_KEY = f"{PREFIX}webhooks:due"
BLOBS_DUE_KEY = f"{PREFIX}blobs:due"
REAPER_LOCK_KEY = f"{PREFIX}reaper"


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def input_key(job_id: str) -> str:
    return f"{PREFIX}input:{job_id}"


def result_key(job_id: str) -> str:
    return f"{PREFIX}result:{job_id}"


def clip_chunk_key(job_id: str, index: int) -> str:
    return f"{PREFIX}clip:{job_id}:{index}"


def clip_info_key(job_id: str) -> str:
    return f"{PREFIX}clipinfo:{job_id}"


def piece_key(segment_id: str) -> str:
    return f"{PREFIX}piece:{segment_id}"


def result_chunk_key(job_id: str, index: int) -> str:
    return f"{PREFIX}result:{job_id}:{index}"


def events_channel(job_id: str) -> str:
    """Pub/sub channel on which every state change of the job is announced (message: the new state)."""
    return f"{PREFIX}events:{job_id}"


def client_queue_key(client: str) -> str:
    return f"{PREFIX}cq:{client}"


def client_active_key(client: str) -> str:
    return f"{PREFIX}active:{client}"


def dedup_key(client: str, digest: str) -> str:
    # Scoped to the client: an identical upload from someone else never finds (or reveals) this job.
    return f"{PREFIX}dedup:{client}:{digest}"


def idempotency_key(client: str, idempotency: str) -> str:
    # Hashed: the client's key may be long or hold characters we do not want in key names.
    return f"{PREFIX}idem:{client}:{hashlib.sha256(idempotency.encode()).hexdigest()}"


def batch_key(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}"


def batch_pending_key(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}:pending"


def webhook_key(delivery_id: str) -> str:
    return f"{PREFIX}webhook:{delivery_id}"
