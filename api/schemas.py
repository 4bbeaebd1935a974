"""Response models of the HTTP API (DESIGN.md's contract), built from job records.

The job models live in ``jobstore.job_view`` (the workers' webhooks post the same body) and are
re-exported here unchanged.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from jobstore.job_view import Job, JobError, JobInput, JobLinks, JobOutput, JobTimings

__all__ = [
    "Health",
    "Job",
    "JobError",
    "JobInput",
    "JobLinks",
    "JobOutput",
    "JobTimings",
    "Readiness",
    "Style",
    "Styles",
]


class Style(BaseModel):
    name: str
    default: bool
    available: bool = Field(description="A live worker has this style loaded.")


class Styles(BaseModel):
    default: str
    styles: list[Style]


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str
    redis: str
    workers: int = Field(description="Worker processes with a live heartbeat.")
    queue_depth: int
