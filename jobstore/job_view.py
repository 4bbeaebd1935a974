"""The job as clients see it: the body of ``GET /jobs/{id}``, and of the webhook announcing its end.

Built from a ``JobRecord`` only, so both sides render it the same: the gateway answers with it
(``api.schemas`` re-exports these models unchanged) and the workers' webhook sender posts it.
Imports pydantic and the job store only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from jobstore.records import JobRecord, JobState, error_title


class JobLinks(BaseModel):
    status: str = Field(description="This job's status URL.")
    result: str = Field(description="Where the image is once the job succeeded.")
    download: str | None = Field(
        default=None,
        description="With object storage, once succeeded: an absolute presigned URL of the result in the store "
        "(no credentials needed), valid until download_expires_at. Absent otherwise.",
    )
    download_expires_at: datetime | None = Field(
        default=None, description="When the download link stops working (never after the result's expiry)."
    )


class ResultLink(BaseModel):
    """A presigned download URL of a job's result and when it stops working (``jobstore.blobs.result_link``)."""

    url: str
    expires_at: float


class JobInput(BaseModel):
    width: int = Field(description="Width after downscaling, as queued for the model.")
    height: int
    original_width: int = Field(description="Width of the upload, after EXIF orientation.")
    original_height: int


class JobOutput(BaseModel):
    format: str = Field(description="png, jpeg, webp or avif.")
    width: int | None = None
    height: int | None = None
    bytes: int | None = Field(default=None, description="Size of the encoded result.")
    precision: str | None = Field(default=None, description="What the generator computed in: fp32, bf16 or int8.")


class JobTimings(BaseModel):
    queue_s: float | None = Field(
        default=None, description="Seconds from acceptance to the first start (ms precision)."
    )
    inference_s: float | None = Field(default=None, description="Seconds spent in the generator (ms precision).")


class JobError(BaseModel):
    type: str = Field(description="Problem type URI, /problems/<slug>.")
    title: str
    detail: str


class JobBody(BaseModel):
    """What every job's body has; ``Job`` (a photo) and ``jobstore.video_view.VideoJob`` add their ``kind``."""

    id: str
    status: JobState
    style: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    queue_position: int | None = Field(default=None, description="1 = next to start; null once started.")
    input: JobInput
    output: JobOutput
    timings: JobTimings
    error: JobError | None = None
    links: JobLinks
    deduplicated: bool = Field(default=False, description="True when an identical earlier request's job answers.")
    mode: str = Field(default="scene", description="scene: the whole photo; portrait: one square at 512x512.")
    crop: str | None = Field(
        default=None, description="The portrait square as x,y,w,h in the upright original; null: the centre square."
    )

    @staticmethod
    def fields_of(
        record: JobRecord, *, position: int | None, deduplicated: bool, download: ResultLink | None
    ) -> dict[str, Any]:
        """The values of the common fields for ``record``."""
        error = None
        if record.error_code is not None:
            error = JobError(
                type=f"/problems/{record.error_code.value}",
                title=error_title(record.error_code),
                detail=record.error_detail or error_title(record.error_code),
            )
        return {
            "id": record.id,
            "status": record.state,
            "style": record.style,
            "created_at": datetime.fromtimestamp(record.created_at, UTC),
            "started_at": _time(record.started_at),
            "finished_at": _time(record.finished_at),
            "queue_position": position,
            "input": JobInput(
                width=record.width,
                height=record.height,
                original_width=record.original_width,
                original_height=record.original_height,
            ),
            "output": JobOutput(
                format=record.format,
                width=record.output_width,
                height=record.output_height,
                bytes=record.output_bytes,
                precision=record.precision,
            ),
            "timings": JobTimings(queue_s=_milliseconds(record.queue_s), inference_s=_milliseconds(record.inference_s)),
            "error": error,
            "links": JobLinks(
                status=f"/jobs/{record.id}",
                result=f"/jobs/{record.id}/result",
                download=download.url if download else None,
                download_expires_at=_time(download.expires_at) if download else None,
            ),
            "deduplicated": deduplicated,
            "mode": record.mode or "scene",
            "crop": record.crop,
        }


class Job(JobBody):
    """A photo job (POST /stylize)."""

    kind: Literal["photo"] = Field(default="photo", description="photo; a clip's job (POST /videos) says video.")

    @classmethod
    def from_record(
        cls,
        record: JobRecord,
        *,
        position: int | None = None,
        deduplicated: bool = False,
        download: ResultLink | None = None,
    ) -> Job:
        return cls(**cls.fields_of(record, position=position, deduplicated=deduplicated, download=download))


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _milliseconds(seconds: float | None) -> float | None:
    """Timings are shown to the millisecond: finer digits are noise, not measurement."""
    return None if seconds is None else round(seconds, 3)
