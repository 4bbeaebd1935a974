"""Job states: queued -> running -> succeeded | failed."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """queued -> running -> succeeded | failed; a job whose worker died mid-job is queued again."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)
