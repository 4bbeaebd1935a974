"""The job record: one job as stored in the ``job:{id}`` hash, and its (de)serialisation."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from jobstore.errors import ErrorCode
from jobstore.states import JobState

# The client of jobs written without a gateway (tools, tests).
LOCAL_CLIENT = "local"

# What HGETALL returns (bytes without decode_responses; the client types allow str too).
RawHash = Mapping[bytes | str, bytes | str] | Mapping[bytes, bytes]


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
    precision: str | None = None  # what the worker's engine computed in: fp32 or bf16
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

    @property
    def dedup_digests(self) -> list[str]:
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
