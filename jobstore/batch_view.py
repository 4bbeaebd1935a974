"""The batch as clients see it: the body of ``GET /batches/{id}`` and of the ``batch.completed`` webhook.

Built from a ``BatchRecord`` and its jobs' bodies only, so the gateway and the workers' webhook
sender render it the same. Imports pydantic and the job store only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from jobstore.batches import BatchRecord
from jobstore.job_view import Job


class BatchProblem(BaseModel):
    type: str = Field(description="Problem type URI, /problems/<slug>.")
    title: str
    status: int
    detail: str


class BatchItem(BaseModel):
    index: int = Field(description="Position of the file in the request, from 0.")
    filename: str = Field(description="The upload's file name (no path, no control characters).")
    job: Job | None = Field(default=None, description="The file's job; null when refused or forgotten.")
    problem: BatchProblem | None = Field(default=None, description="Why the file got no job.")


class BatchCounts(BaseModel):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    rejected: int = Field(default=0, description="Files refused at upload (each entry carries its problem).")
    expired: int = Field(default=0, description="Jobs whose record is gone (deleted, or kept past its TTL).")


class BatchLinks(BaseModel):
    status: str
    events: str
    results: str = Field(description="A zip of the results that succeeded.")


class Batch(BaseModel):
    id: str
    status: Literal["in_progress", "completed"] = Field(description="completed once every job ended.")
    style: str
    created_at: datetime
    counts: BatchCounts
    jobs: list[BatchItem]
    links: BatchLinks

    @property
    def pending(self) -> int:
        return self.counts.queued + self.counts.running

    @classmethod
    def build(cls, batch: BatchRecord, jobs: Sequence[Job | None]) -> Batch:
        """``jobs``: the body of each of ``batch.job_ids`` (None where the record is gone), in order."""
        by_id = dict(zip(batch.job_ids, jobs, strict=True))
        counts = BatchCounts()
        items = []
        for entry in batch.entries:
            job = by_id.get(entry.job_id) if entry.job_id is not None else None
            if entry.job_id is None:
                counts.rejected += 1
            elif job is None:
                counts.expired += 1
            else:
                setattr(counts, job.status.value, getattr(counts, job.status.value) + 1)
            problem = None if entry.problem is None else BatchProblem.model_validate(entry.problem)
            items.append(BatchItem(index=entry.index, filename=entry.filename, job=job, problem=problem))
        done = counts.queued + counts.running == 0
        return cls(
            id=batch.id,
            status="completed" if done else "in_progress",
            style=batch.style,
            created_at=datetime.fromtimestamp(batch.created_at, UTC),
            counts=counts,
            jobs=items,
            links=BatchLinks(
                status=f"/batches/{batch.id}",
                events=f"/batches/{batch.id}/events",
                results=f"/batches/{batch.id}/results.zip",
            ),
        )
