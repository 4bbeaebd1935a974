"""The job-store contract shared by the gateway (api/) and the workers (worker/).

Owns the Celery task and queue names, every Redis key the service writes, the job states,
the job record and its (de)serialisation, the job error codes, and the pipelines that change
a job's state. Both sides queue the same commands: the gateway on an asyncio pipeline, the
workers on a blocking one (redis-py pipelines buffer commands synchronously in both).
Imports stdlib, pydantic and redis only: never torch, celery or inference.

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
=============================  ================================  ===================  ======================

Job ids are ``secrets.token_urlsafe(16)`` (128 random bits): unguessable, and the id is the
only capability needed to read a job.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio
from pydantic import BaseModel, ConfigDict

TASK_NAME = "animegan.stylize"
QUEUE_NAME = "animegan"
PREFIX = "animegan:"
QUEUED_KEY = f"{PREFIX}queued"
WORKERS_KEY = f"{PREFIX}workers"
SERVICE_TIME_KEY = f"{PREFIX}stats:service_s"

# token_urlsafe(16) gives 22 characters; anything else cannot be one of ours.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)

# Weight of the newest sample in the service-time average used for Retry-After.
SERVICE_TIME_ALPHA = 0.3
DEFAULT_SERVICE_S = 5.0
# A running attempt is stale this long after its start: time limit x factor + seconds.
STALE_MARGIN_FACTOR = 1.1
STALE_MARGIN_S = 5.0
STALE_DETAIL = "The worker running this job stopped without finishing it; the job will not be retried."

Pipe = redis.client.Pipeline | redis.asyncio.client.Pipeline
# What HGETALL returns (bytes without decode_responses; the client types allow str too).
RawHash = Mapping[bytes | str, bytes | str] | Mapping[bytes, bytes]


class JobState(StrEnum):
    """queued -> running -> succeeded | failed; a job whose worker died mid-job is queued again."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


class ErrorCode(StrEnum):
    """Why a job failed; the value is the problem slug the gateway shows as ``error.type``."""

    INVALID_IMAGE = "invalid-image"
    TOO_MANY_PIXELS = "too-many-pixels"
    MODEL_UNAVAILABLE = "model-unavailable"
    INFERENCE_TIMEOUT = "inference-timeout"
    INPUT_EXPIRED = "input-expired"
    WORKER_LOST = "worker-lost"
    BROKER_UNAVAILABLE = "broker-unavailable"
    INTERNAL_ERROR = "internal-error"


_ERROR_TITLES = {
    ErrorCode.INVALID_IMAGE: "Invalid image",
    ErrorCode.TOO_MANY_PIXELS: "Too many pixels",
    ErrorCode.MODEL_UNAVAILABLE: "Model unavailable",
    ErrorCode.INFERENCE_TIMEOUT: "Inference timed out",
    ErrorCode.INPUT_EXPIRED: "Input expired",
    ErrorCode.WORKER_LOST: "Worker lost",
    ErrorCode.BROKER_UNAVAILABLE: "Broker unavailable",
    ErrorCode.INTERNAL_ERROR: "Internal error",
}


class JobRecord(BaseModel):
    """One job as stored in the ``job:{id}`` hash (every value a string; None means absent)."""

    model_config = ConfigDict(frozen=True)

    id: str
    state: JobState
    style: str
    format: str
    digest: str
    upload_digest: str | None = None
    created_at: float
    width: int
    height: int
    original_width: int
    original_height: int
    input_ttl_s: int
    result_ttl_s: int
    record_ttl_s: int
    attempts: int = 0
    started_at: float | None = None
    # While running: when the attempt must have ended (the hard time limit plus a margin). A job
    # still running after it lost its worker without trace, and is failed as worker-lost.
    deadline_at: float | None = None
    finished_at: float | None = None
    queue_s: float | None = None
    inference_s: float | None = None
    output_width: int | None = None
    output_height: int | None = None
    output_bytes: int | None = None
    error_code: ErrorCode | None = None
    error_detail: str | None = None
    request_id: str | None = None

    @property
    def dedup_digests(self) -> list[str]:
        return [self.digest] + ([self.upload_digest] if self.upload_digest else [])

    def to_hash(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.model_dump(exclude_none=True).items()}

    @classmethod
    def from_hash(cls, raw: RawHash) -> JobRecord:
        fields = {text(k): text(v) for k, v in raw.items()}
        return cls.model_validate(fields)


def error_title(code: ErrorCode) -> str:
    return _ERROR_TITLES[code]


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def new_job_id() -> str:
    return secrets.token_urlsafe(16)


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID_RE.match(value))


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def input_key(job_id: str) -> str:
    return f"{PREFIX}input:{job_id}"


def result_key(job_id: str) -> str:
    return f"{PREFIX}result:{job_id}"


def dedup_key(digest: str) -> str:
    return f"{PREFIX}dedup:{digest}"


def idempotency_key(client_key: str) -> str:
    # Hashed: the client's key may be long or hold characters we do not want in key names.
    return f"{PREFIX}idem:{hashlib.sha256(client_key.encode()).hexdigest()}"


def request_digest(raw_rgb: bytes, width: int, height: int, style: str, fmt: str) -> str:
    """Identity of a job for deduplication: the normalized pixels plus what was asked of them."""
    h = hashlib.sha256(raw_rgb)
    h.update(f"|{width}x{height}|{style}|{fmt}".encode())
    return h.hexdigest()


def upload_digest(upload: bytes, style: str, fmt: str, max_side: int) -> str:
    """Identity of an upload before decoding: the same bytes always normalize to the same pixels.

    Lets the gateway answer a repeated upload without decoding it again, and doubles as the
    request fingerprint of an Idempotency-Key.
    """
    h = hashlib.sha256(upload)
    h.update(f"|upload|{style}|{fmt}|{max_side}".encode())
    return h.hexdigest()


def now() -> float:
    return time.time()


# -- pipelines: the state changes, queued on a sync or async pipeline --------------------------


def queue_create(pipe: Pipe, record: JobRecord, raw_rgb: bytes) -> None:
    """Store the input and the queued record, and list the job as waiting."""
    pipe.set(input_key(record.id), raw_rgb, ex=record.input_ttl_s)
    pipe.hset(job_key(record.id), mapping=record.to_hash())  # type: ignore[arg-type]
    pipe.expire(job_key(record.id), record.record_ttl_s)
    pipe.zadd(QUEUED_KEY, {record.id: record.created_at})
    for digest in record.dedup_digests:
        pipe.set(dedup_key(digest), record.id, ex=record.record_ttl_s)


def queue_running(pipe: Pipe, record: JobRecord, started_at: float, *, deadline_at: float | None = None) -> None:
    """Mark a job running; the queue wait counts from creation to the first start."""
    fields = {"state": JobState.RUNNING.value, "started_at": str(started_at)}
    if record.queue_s is None:
        fields["queue_s"] = str(max(0.0, started_at - record.created_at))
    if deadline_at is not None:
        fields["deadline_at"] = str(deadline_at)
    pipe.hset(job_key(record.id), mapping=fields)  # type: ignore[arg-type]
    # A running job keeps its record for a full TTL (and a record that expired meanwhile gets one).
    pipe.expire(job_key(record.id), record.record_ttl_s)
    pipe.zrem(QUEUED_KEY, record.id)


def queue_succeeded(pipe: Pipe, record: JobRecord, *, inference_s: float, width: int, height: int, size: int) -> None:
    """Complete a job whose result is already stored; TTLs restart from completion."""
    fields = {
        "state": JobState.SUCCEEDED.value,
        "finished_at": str(now()),
        "inference_s": str(inference_s),
        "output_width": str(width),
        "output_height": str(height),
        "output_bytes": str(size),
    }
    pipe.hset(job_key(record.id), mapping=fields)  # type: ignore[arg-type]
    pipe.expire(job_key(record.id), record.record_ttl_s)
    pipe.expire(result_key(record.id), record.result_ttl_s)
    # An identical request is answered from this job while both record and result exist.
    for digest in record.dedup_digests:
        pipe.set(dedup_key(digest), record.id, ex=min(record.record_ttl_s, record.result_ttl_s))
    pipe.delete(input_key(record.id))
    pipe.zrem(QUEUED_KEY, record.id)


def queue_requeued(pipe: Pipe, record: JobRecord) -> None:
    """Put a job whose worker died mid-job back in line (its message is requeued); keeps its attempts."""
    pipe.hset(job_key(record.id), "state", JobState.QUEUED.value)
    pipe.hdel(job_key(record.id), "deadline_at")
    pipe.zadd(QUEUED_KEY, {record.id: record.created_at})


def running_deadline(started_at: float, time_limit_s: float) -> float:
    """When an attempt started at ``started_at`` must have ended, whatever happened to its worker.

    The hard time limit kills the attempt before this; the margin covers the worker's own
    bookkeeping, so only a job whose worker vanished entirely is ever found past its deadline.
    """
    return started_at + time_limit_s * STALE_MARGIN_FACTOR + STALE_MARGIN_S


def is_stale(record: JobRecord, at: float | None = None) -> bool:
    """A running job past its deadline: its worker is gone and nothing else will finish it."""
    moment = now() if at is None else at
    return record.state is JobState.RUNNING and record.deadline_at is not None and record.deadline_at < moment


def queue_failed(pipe: Pipe, record: JobRecord, code: ErrorCode, detail: str) -> None:
    """End a job as failed; the caller removes the dedup entry if it points at this job."""
    fields = {
        "state": JobState.FAILED.value,
        "finished_at": str(now()),
        "error_code": code.value,
        "error_detail": detail,
    }
    pipe.hset(job_key(record.id), mapping=fields)  # type: ignore[arg-type]
    pipe.expire(job_key(record.id), record.record_ttl_s)
    pipe.delete(input_key(record.id))
    pipe.zrem(QUEUED_KEY, record.id)


def queue_prune_waiting(pipe: Pipe, max_age_s: float) -> None:
    """Forget waiting entries older than any record can live (their job is gone)."""
    pipe.zremrangebyscore(QUEUED_KEY, "-inf", now() - max_age_s)


# -- worker heartbeats and service time ---------------------------------------------------------


class Heartbeat(BaseModel):
    """What a worker process tells the gateway about itself, refreshed every few seconds."""

    worker_id: str
    pid: int
    styles: list[str]
    threads: int
    expires_at: float


def live_heartbeats(raw: RawHash, at: float | None = None) -> list[Heartbeat]:
    """Heartbeats that have not expired, from an HGETALL of WORKERS_KEY."""
    moment = now() if at is None else at
    beats = []
    for value in raw.values():
        try:
            beat = Heartbeat.model_validate_json(value)
        except ValueError:
            continue
        if beat.expires_at > moment:
            beats.append(beat)
    return beats


def next_service_time(previous: bytes | str | None, sample_s: float) -> float:
    """Exponentially weighted mean of inference seconds (read-modify-write; races only blur it)."""
    if previous is None:
        return sample_s
    return (1 - SERVICE_TIME_ALPHA) * float(previous) + SERVICE_TIME_ALPHA * sample_s


def estimate_wait_s(jobs_ahead: int, service_s: float, workers: int) -> float:
    """Seconds until a job with ``jobs_ahead`` before it finishes, given ``workers`` in parallel."""
    return (jobs_ahead + 1) * service_s / max(1, workers)


def encode_idempotency(job_id: str, fingerprint: str) -> str:
    return json.dumps({"job_id": job_id, "fingerprint": fingerprint})


def decode_idempotency(raw: bytes | str) -> tuple[str, str]:
    value: dict[str, Any] = json.loads(raw)
    return str(value["job_id"]), str(value["fingerprint"])
