"""When a running attempt is stale: its worker vanished and nothing else will finish it."""

from __future__ import annotations

from jobstore.clock import now
from jobstore.records import JobRecord
from jobstore.states import JobState

# A running attempt is stale this long after its start: time limit x factor + seconds.
STALE_MARGIN_FACTOR = 1.1
STALE_MARGIN_S = 5.0
STALE_DETAIL = "The worker running this job stopped without finishing it; the job will not be retried."


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
