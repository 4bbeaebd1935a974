"""The soak's capacity probe: how many jobs a minute the stack finishes when users keep it busy.

Before a soak, ``SoakUser`` runs back to back (no pacing) with twice as many users as worker processes,
so a job always waits: the stack is saturated. The jobs that finished after the warm-up (the first third:
model loading, first-touch allocations) give the capacity in jobs per minute; the soak then paces its
users at a share of it (80 % by default).
"""

from __future__ import annotations

from typing import Any

WARMUP_SHARE = 1 / 3


def capacity_per_min(
    jobs: list[dict[str, str]], start: float, end: float, warmup_share: float = WARMUP_SHARE
) -> float | None:
    """Succeeded jobs per minute that finished in ``[start + warm-up, end]``; None when none did."""
    begin = start + (end - start) * warmup_share
    done = [row for row in jobs if row.get("outcome") == "succeeded" and begin <= float(row["finished_at"]) <= end]
    if not done or end <= begin:
        return None
    return len(done) * 60 / (end - begin)


def pace_s(rate_per_min: float, users: int) -> float:
    """Seconds between two job starts of one user, so ``users`` of them start ``rate_per_min`` jobs a minute."""
    if rate_per_min <= 0 or users <= 0:
        raise ValueError(f"rate and users must be positive: {rate_per_min}, {users}")
    return users * 60 / rate_per_min


def describe(probe: dict[str, Any]) -> str:
    """One line for the report: what the probe measured and what the soak ran at."""
    if probe.get("given_rate"):
        return f"rate given: {probe['rate_per_min']:.1f} jobs/min (no capacity probe)"
    return (
        f"capacity {probe['capacity_per_min']:.1f} jobs/min ({probe['users']} users back to back for "
        f"{probe['seconds']:.0f} s, first third left out); soak at {probe['share']:.0%}: "
        f"{probe['rate_per_min']:.1f} jobs/min"
    )
