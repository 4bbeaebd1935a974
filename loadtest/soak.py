"""The soak's analysis: memory creep per process, Redis against its plateau, latency over time.

Pure functions over the run folder's series (``(t, value)`` points, unix seconds), so each can be tested
with synthetic data:

- ``growth``: relative growth of the least-squares line through a series between two times. A line, not
  first-versus-last sample: a worker child's RSS saw-tooths with every job, and a single sample taken
  mid-job would read as growth.
- ``tail_growth``: the same over the last two thirds of the run (a 30-minute soak: its last 20 minutes),
  after warm-up (model load, first-touch allocations, Redis filling up to its plateau).
- ``floors``: the lowest sample per minute. A busy child's RSS swings by the size of the job it runs (250 to
  415 MB on a 2-core Xeon); what it keeps between jobs is the floor, and a leak raises the floor. The child
  check fits its line through the floors; the growth of every sample's line is reported beside it.
- ``plateau``: the level a series settles at (median of the last third), when it got there (from then on
  every sample stays within the tolerance band), and whether it stayed flat (in the band for at least the
  last third and a drift under the tolerance). It is judged on 30 s means: a single input being written
  or a result expiring moves Redis by a few MB, which is noise, not a trend.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from loadtest.analysis import REDIS_MEMORY, RunData, percentile

Points = list[tuple[float, float]]

TAIL_SHARE = 2 / 3
PLATEAU_TOLERANCE = 0.10
CHILD_GROWTH_LIMIT = 0.02
LATENCY_BIN_S = 120.0
FLOOR_BIN_S = 60.0
SMOOTH_BIN_S = 30.0
MAX_REDIS_MEMORY = "animegan_redis_max_memory_bytes"


def fit_line(points: Points) -> tuple[float, float] | None:
    """Least-squares ``(slope, intercept)`` of ``value = slope * t + intercept``; None for fewer than 2 times."""
    if len({t for t, _ in points}) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var
    return slope, mean_v - slope * mean_t


def growth(points: Points, start: float, end: float) -> float | None:
    """Relative growth of the fitted line over ``[start, end]`` (0.02 = 2 %), from the points inside it."""
    inside = [(t, v) for t, v in points if start <= t <= end]
    line = fit_line(inside)
    if line is None:
        return None
    first, last = (min(t for t, _ in inside), max(t for t, _ in inside))
    at_start = line[0] * first + line[1]
    return (line[0] * last + line[1] - at_start) / at_start if at_start > 0 else None


def tail_growth(points: Points, start: float, end: float, share: float = TAIL_SHARE) -> float | None:
    """``growth`` over the last ``share`` of ``[start, end]``."""
    return growth(points, end - (end - start) * share, end)


def binned(points: Points, bin_s: float, how: str = "min") -> Points:
    """One point per ``bin_s`` (at the bin's centre): the minimum (``"min"``) or the mean (``"mean"``) of it."""
    bins: dict[int, list[float]] = defaultdict(list)
    for t, v in points:
        bins[int(t // bin_s)].append(v)
    reduce = min if how == "min" else (lambda values: sum(values) / len(values))
    return [((index + 0.5) * bin_s, reduce(values)) for index, values in sorted(bins.items())]


def floors(points: Points, bin_s: float = FLOOR_BIN_S) -> Points:
    """The lowest RSS per ``bin_s``: what a process keeps between jobs."""
    return binned(points, bin_s, "min")


def plateau(points: Points, start: float, end: float, tolerance: float = PLATEAU_TOLERANCE) -> dict[str, Any]:
    """Where a series settles within ``[start, end]``: level, reached_at, drift since then, flat or not."""
    inside = sorted((t, v) for t, v in points if start <= t <= end)
    last_third = [v for t, v in inside if t >= end - (end - start) / 3]
    level = percentile(last_third, 50)
    if level is None or level <= 0:
        return {"level": level, "reached_at": None, "drift": None, "flat": False, "tolerance": tolerance}
    band = tolerance * level
    outside = [i for i, (_, v) in enumerate(inside) if abs(v - level) > band]
    first_inside = outside[-1] + 1 if outside else 0
    reached_at = inside[first_inside][0] if first_inside < len(inside) else None
    drift = growth(inside, reached_at, end) if reached_at is not None else None
    held_long_enough = reached_at is not None and reached_at <= end - (end - start) / 3
    flat = held_long_enough and drift is not None and abs(drift) < tolerance
    return {"level": level, "reached_at": reached_at, "drift": drift, "flat": flat, "tolerance": tolerance}


def rss_series(rows: list[dict[str, str]]) -> dict[int, dict[str, Any]]:
    """Per pid of the stack: component, parent pid and its RSS points (the load generator and runner left out)."""
    found: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["component"] in ("locust", "runner"):
            continue
        entry = found.setdefault(int(row["pid"]), {"component": row["component"], "ppid": int(row["ppid"])})
        entry["component"] = row["component"]
        entry.setdefault("points", []).append((float(row["t"]), float(row["rss_bytes"])))
    return found


def worker_children(series: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The prefork children: worker processes whose parent is a worker process (the Celery main one)."""
    workers = {pid for pid, entry in series.items() if entry["component"].startswith("worker")}
    return {pid: entry for pid, entry in series.items() if pid in workers and entry["ppid"] in workers}


def latency_over_time(jobs: list[dict[str, str]], start: float, bin_s: float = LATENCY_BIN_S) -> list[dict[str, Any]]:
    """p50 / p95 / p99 of the succeeded jobs' latency, per ``bin_s`` of finish time (seconds since start)."""
    bins: dict[int, list[float]] = defaultdict(list)
    for row in jobs:
        if row.get("outcome") == "succeeded":
            bins[int((float(row["finished_at"]) - start) // bin_s)].append(float(row["latency_s"]))
    return [
        {
            "from_s": index * bin_s,
            "jobs": len(values),
            "p50_s": percentile(values, 50),
            "p95_s": percentile(values, 95),
            "p99_s": percentile(values, 99),
        }
        for index, values in sorted(bins.items())
    ]


def summarize(data: RunData) -> dict[str, Any]:
    """The soak section of summary.json."""
    start, end = data.window
    tail_from = end - (end - start) * TAIL_SHARE
    series = rss_series(data.processes)
    processes = []
    for pid, entry in sorted(series.items()):
        points = [(t, v) for t, v in entry["points"] if start <= t <= end]
        if not points:
            continue
        processes.append(
            {
                "pid": pid,
                "component": entry["component"],
                "child": pid in worker_children(series),
                "start_rss_bytes": points[0][1],
                "end_rss_bytes": points[-1][1],
                "peak_rss_bytes": max(v for _, v in points),
                "tail_growth": tail_growth(floors(points), start, end),
                "tail_growth_all_samples": tail_growth(points, start, end),
                "sampled_s": points[-1][0] - points[0][0],
            }
        )
    children = [p for p in processes if p["child"]]
    redis_points = [point for points in data.metrics.get(REDIS_MEMORY, {}).values() for point in points]
    maxmemory = [v for points in data.metrics.get(MAX_REDIS_MEMORY, {}).values() for _, v in points]
    inside = [v for t, v in redis_points if start <= t <= end]
    smooth = binned(sorted(redis_points), SMOOTH_BIN_S, "mean")
    return {
        "window_s": end - start,
        "tail_from_s": tail_from - start,
        "processes": processes,
        "children": len(children),
        "max_child_growth": max((p["tail_growth"] for p in children if p["tail_growth"] is not None), default=None),
        "redis": {
            **plateau(smooth, start, end),
            "reached_after_s": None if (at := plateau(smooth, start, end)["reached_at"]) is None else at - start,
            "start_bytes": inside[0] if inside else None,
            "peak_bytes": max(inside, default=None),
            "end_bytes": inside[-1] if inside else None,
            "maxmemory_bytes": maxmemory[-1] if maxmemory else None,
        },
        "latency": latency_over_time(data.jobs, start),
        "per_minute": len([row for row in data.jobs if start <= float(row["submitted_at"]) <= end]) * 60 / (end - start)
        if end > start
        else 0.0,
        "capacity": data.meta.get("capacity"),
    }


def checks(soak: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The soak's goals: children flat, Redis flat at its plateau (the job outcomes are checked already)."""
    worst = soak["max_child_growth"]
    redis = soak["redis"]
    level = redis["level"]
    plateau_text = (
        f"plateau {level / 2**20:.0f} MiB from {redis['reached_after_s']:.0f} s on, drift since {redis['drift']:+.1%}"
        if level and redis["reached_after_s"] is not None and redis["drift"] is not None
        else "no plateau found"
    )
    return [
        (
            f"every worker child's RSS floor grew < {CHILD_GROWTH_LIMIT:.0%} over the last two thirds",
            soak["children"] > 0 and worst is not None and worst < CHILD_GROWTH_LIMIT,
            f"{soak['children']} children, worst {worst:+.2%}" if worst is not None else "no worker child sampled",
        ),
        ("Redis flat at its plateau", bool(redis["flat"]), plateau_text),
    ]
