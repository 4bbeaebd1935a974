"""The job as clients see it: the body of GET /jobs/{id} and, while it has not ended, a poll hint.

The answer of POST /stylize, GET /jobs/{id} and the 409s of a job still under way all come from
here, so the body and the Retry-After a client gets never disagree between them.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.jobs.admission import Admission
from api.jobs.reader import JobReader
from jobstore.job_view import Job
from jobstore.records import JobKind, JobRecord, JobState
from jobstore.video_view import VideoJob


@dataclass(frozen=True)
class Described:
    job: Job | VideoJob
    poll_hint_s: int | None  # seconds for Retry-After; None once the job ended


async def describe(
    record: JobRecord, reader: JobReader, admission: Admission, *, deduplicated: bool = False
) -> Described:
    """The job's body (with its queue position; a video's with its parts) and its poll hint."""
    job: Job | VideoJob
    if record.job_kind is JobKind.VIDEO:
        job = await reader.view(record)
    else:
        job = reader.body(record, position=await reader.position(record), deduplicated=deduplicated)
    hint = None if record.state.terminal else await poll_hint(admission, record, job.queue_position)
    return Described(job, hint)


async def poll_hint(admission: Admission, record: JobRecord, position: int | None) -> int:
    """Seconds until the job should have moved on: its turn while queued, its end while running."""
    jobs_ahead = (position or 1) - 1 if record.state is JobState.QUEUED else 0
    return await admission.poll_hint(jobs_ahead)
