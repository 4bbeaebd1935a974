"""A video job as clients see it: the body of ``GET /jobs/{id}`` (and its webhook) for a clip.

The photo's body (``jobstore.job_view.Job``) plus ``kind: "video"``, ``progress`` and ``segments``:
each segment's frames, its state and the worker process that ran it (or runs it). Built from the
video's record and its parts (``jobstore.videos.read_parts``), so the gateway and the webhook
sender render it the same. ``AnyJob`` is either body, told apart by ``kind``. Imports pydantic and
the job store only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from jobstore.job_view import Job, JobBody, ResultLink
from jobstore.records import JobKind, JobRecord, JobState
from jobstore.videos import Part


class VideoProgress(BaseModel):
    frames_done: int = Field(description="Frames of the clip whose segment succeeded.")
    frames_total: int = Field(description="Frames of the clip (exactly, from its timestamps).")


class SegmentState(BaseModel):
    index: int
    first_frame: int = Field(description="Index of the segment's first frame in the clip (presentation order).")
    frames: int
    status: JobState
    worker: str | None = Field(
        default=None, description="The worker process (host:pid) that ran the segment, or runs it now."
    )


class VideoJob(JobBody):
    """A clip's job (POST /videos): its result is an MP4."""

    kind: Literal["video"] = Field(default="video", description="video: a clip's job (POST /videos).")
    progress: VideoProgress
    segments: list[SegmentState] = Field(description="About two seconds of the clip each, run by any worker.")

    @classmethod
    def from_record(
        cls,
        record: JobRecord,
        parts: Sequence[Part],
        *,
        position: int | None = None,
        download: ResultLink | None = None,
    ) -> VideoJob:
        segments = [
            SegmentState(
                index=p.index,
                first_frame=p.first_frame or 0,
                frames=p.frames or 0,
                status=p.state or JobState.FAILED,
                worker=p.worker,
            )
            for p in parts
            if p.index is not None
        ]
        progress = VideoProgress(frames_done=record.frames_done or 0, frames_total=record.frames_total or 0)
        fields = cls.fields_of(record, position=position, deduplicated=False, download=download)
        return cls(**fields, progress=progress, segments=segments)


AnyJob = Annotated[Job | VideoJob, Field(discriminator="kind")]


def job_body(
    record: JobRecord,
    parts: Sequence[Part] = (),
    *,
    position: int | None = None,
    deduplicated: bool = False,
    download: ResultLink | None = None,
) -> Job | VideoJob:
    """The body of the job of ``record``: a video's with its ``parts``, else a photo's."""
    if record.job_kind is JobKind.VIDEO:
        return VideoJob.from_record(record, parts, position=position, download=download)
    return Job.from_record(record, position=position, deduplicated=deduplicated, download=download)
