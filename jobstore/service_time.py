"""The service-time average the workers keep, and the wait estimate the gateway makes from it."""

from __future__ import annotations

# Weight of the newest sample in the service-time average used for Retry-After.
SERVICE_TIME_ALPHA = 0.3
DEFAULT_SERVICE_S = 5.0


def next_service_time(previous: bytes | str | None, sample_s: float) -> float:
    """Exponentially weighted mean of inference seconds (read-modify-write; races only blur it)."""
    if previous is None:
        return sample_s
    return (1 - SERVICE_TIME_ALPHA) * float(previous) + SERVICE_TIME_ALPHA * sample_s


def estimate_wait_s(jobs_ahead: int, service_s: float, workers: int) -> float:
    """Seconds until a job with ``jobs_ahead`` before it finishes, given ``workers`` in parallel."""
    return (jobs_ahead + 1) * service_s / max(1, workers)
