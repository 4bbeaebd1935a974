"""The job record: one job as stored in the ``job:{id}`` hash, and its (de)serialisation.

With what a record is made of: its id (``new_job_id``), its state (``JobState``), the code a failed
job carries (``ErrorCode``) and the wall clock of its timestamps (``now``). Imports pydantic only.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

# token_urlsafe(16) gives 22 characters; anything else cannot be one of ours.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)


def now() -> float:
    """The wall clock of the job store: every timestamp in a record is ``time.time()`` seconds."""
    return time.time()


def new_job_id() -> str:
    """128 random bits: unguessable, since the id is the only capability needed to read a job."""
    return secrets.token_urlsafe(16)


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID_RE.match(value))


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
    INVALID_VIDEO = "invalid-video"
    BROKER_UNAVAILABLE = "broker-unavailable"
    INTERNAL_ERROR = "internal-error"


_ERROR_TITLES = {
    ErrorCode.INVALID_IMAGE: "Invalid image",
    ErrorCode.TOO_MANY_PIXELS: "Too many pixels",
    ErrorCode.MODEL_UNAVAILABLE: "Model unavailable",
    ErrorCode.INFERENCE_TIMEOUT: "Inference timed out",
    ErrorCode.INPUT_EXPIRED: "Input expired",
    ErrorCode.WORKER_LOST: "Worker lost",
    ErrorCode.INVALID_VIDEO: "Invalid video",
    ErrorCode.BROKER_UNAVAILABLE: "Broker unavailable",
    ErrorCode.INTERNAL_ERROR: "Internal error",
}


def error_title(code: ErrorCode) -> str:
    return _ERROR_TITLES[code]


# The client of jobs written without a gateway (tools, tests).
LOCAL_CLIENT = "local"

# What HGETALL returns (bytes without decode_responses; the client types allow str too).
RawHash = Mapping[bytes | str, bytes | str] | Mapping[bytes, bytes]


class JobKind(StrEnum):
    """What a record is: a photo job (records without a kind), a video job, or a part of one.

    A video job (``jobstore.videos``) is never queued itself: its segments are, each a record of its
    own that the fair queue runs like a photo, and once they all succeeded its join.
    """

    PHOTO = "photo"
    VIDEO = "video"
    SEGMENT = "segment"
    JOIN = "join"


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
    finished_at: float | None = None
    queue_s: float | None = None
    inference_s: float | None = None
    output_width: int | None = None
    output_height: int | None = None
    output_bytes: int | None = None
    precision: str | None = None  # what the worker's engine computed in: fp32, bf16 or int8
    error_code: ErrorCode | None = None
    error_detail: str | None = None
    request_id: str | None = None
    # Who submitted it (api.clients.ClientIdentity.id): the job is visible to this client only.
    client: str = LOCAL_CLIENT
    # While running: the worker process holding its lease (``host:pid``).
    holder: str | None = None
    # Where the job's end is announced (a signed POST), if the client asked for it.
    callback_url: str | None = None
    # How the upload was framed: "portrait" (a square at 512x512; ``crop`` its x,y,w,h in the
    # upright original, None for the centre square) or "scene" (None on records from before).
    mode: str | None = None
    crop: str | None = None
    # Where its input and result bytes are: "s3" in the object store (jobstore.blobs), None in Redis.
    blobs: str | None = None
    # Videos (jobstore.videos). None on a photo. A video: the clip's bytes, frames and segments, and
    # the frames and segments done. A segment or join: its video (``parent``); a segment: its
    # index, first frame and frame count.
    kind: JobKind | None = None
    parent: str | None = None
    clip_bytes: int | None = None
    frames_total: int | None = None
    frames_done: int | None = None
    segments: int | None = None
    segments_done: int | None = None
    segment: int | None = None
    first_frame: int | None = None
    frames: int | None = None

    @property
    def job_kind(self) -> JobKind:
        return self.kind or JobKind.PHOTO

    @property
    def dedup_digests(self) -> list[str]:
        # Only a photo answers an identical later request.
        if self.job_kind is not JobKind.PHOTO:
            return []
        return [self.digest] + ([self.upload_digest] if self.upload_digest else [])

    def to_hash(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.model_dump(exclude_none=True).items()}

    @classmethod
    def from_hash(cls, raw: RawHash) -> JobRecord:
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        return cls.model_validate(fields)


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else value
