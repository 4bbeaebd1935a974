"""Numbers from a load run's folder: the raw CSVs in, plain dicts out (JSON-ready, rendered by ``report``).

Inputs (all written during the run): ``requests.csv`` and ``jobs.csv`` (the locustfile), ``metrics.csv``,
``processes.csv``, ``host.csv`` (the sampler), ``metrics-start.prom`` / ``metrics-end.prom`` (raw scrapes),
``tempfiles.json`` and ``run.json`` (the runner). A missing file or metric yields ``None`` ("absent"), never
an exception: the metrics the service exports grow over time and the report must work with any of them.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.sampler import parse_labels, parse_samples

# Names from DESIGN.md / the observability work; each is looked up, none is required.
RSS = "animegan_process_resident_memory_bytes"
JOB_PEAK_RSS = "animegan_job_peak_rss_bytes"
IOWAIT = "animegan_host_cpu_iowait_seconds_total"
QUEUE_DEPTH = "animegan_queue_depth"
JOBS_RUNNING = "animegan_jobs_running"
DISK_READ = "animegan_process_disk_read_bytes_total"
DISK_WRITE = "animegan_process_disk_write_bytes_total"
DEDUP_HITS = "animegan_dedup_hits_total"
REDIS_MEMORY = "animegan_redis_used_memory_bytes"

Series = dict[str, list[tuple[float, float]]]


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def number(text: str | None) -> float | None:
    """A CSV cell as a float; empty, missing or non-numeric -> None."""
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is None or math.isfinite(value) else None


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class RunData:
    """Everything a run folder holds, parsed."""

    folder: Path
    meta: dict[str, Any] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    jobs: list[dict[str, str]] = field(default_factory=list)
    metrics: dict[str, Series] = field(default_factory=dict)
    processes: list[dict[str, str]] = field(default_factory=list)
    host: list[dict[str, str]] = field(default_factory=list)
    temp: dict[str, Any] = field(default_factory=dict)
    start_scrape: str = ""
    end_scrape: str = ""

    @property
    def window(self) -> tuple[float, float]:
        """When the load ran (unix seconds): from locust's start to its exit."""
        return float(self.meta.get("load_started_at", 0.0)), float(self.meta.get("load_finished_at", 0.0))


def load_run(folder: Path) -> RunData:
    data = RunData(folder=folder)
    for name, attr in (("run.json", "meta"), ("tempfiles.json", "temp")):
        if (folder / name).is_file():
            setattr(data, attr, json.loads((folder / name).read_text()))
    data.requests = read_csv(folder / "requests.csv")
    data.jobs = read_csv(folder / "jobs.csv")
    data.processes = read_csv(folder / "processes.csv")
    data.host = read_csv(folder / "host.csv")
    for row in read_csv(folder / "metrics.csv"):
        value, t = number(row["value"]), number(row["t"])
        if value is not None and t is not None:
            data.metrics.setdefault(row["name"], {}).setdefault(row["labels"], []).append((t, value))
    for name, attr in (("metrics-start.prom", "start_scrape"), ("metrics-end.prom", "end_scrape")):
        if (folder / name).is_file():
            setattr(data, attr, (folder / name).read_text())
    return data


# ------------------------------------------------------------------------------------------- requests
def http_summary(requests: list[dict[str, str]]) -> dict[str, Any]:
    """HTTP requests (the ``JOB`` pseudo-requests left out): overall and per route, with status counts."""
    rows = [row for row in requests if row["method"] != "JOB"]
    times = [float(row["response_ms"]) for row in rows]
    statuses = Counter(int(row["status"]) for row in rows)
    routes: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        routes[f"{row['method']} {row['name']}"].append(row)
    shed = [row for row in rows if row["status"] == "503" and row["ok"] == "1"]
    # 429s the client honoured (waited Retry-After, asked again): per-client limits, counted like shedding.
    refused = [row for row in rows if row["status"] == "429" and row["ok"] == "1"]
    return {
        "requests": len(rows),
        "failures": sum(1 for row in rows if row["ok"] != "1"),
        "mean_ms": mean(times),
        "p50_ms": percentile(times, 50),
        "p95_ms": percentile(times, 95),
        "max_ms": max(times, default=None),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "server_errors": sum(1 for row in rows if int(row["status"]) >= 500) - len(shed),
        "shed_503": len(shed),
        "shed_503_without_retry_after": sum(1 for row in shed if not row.get("retry_after")),
        "refused_429": len(refused),
        "refused_429_without_retry_after": sum(1 for row in refused if not row.get("retry_after")),
        "problems_429": dict(sorted(Counter(row.get("problem") or "?" for row in refused).items())),
        "connection_errors": statuses.get(0, 0),
        "routes": {route: route_summary(group) for route, group in sorted(routes.items())},
    }


def route_summary(rows: list[dict[str, str]]) -> dict[str, Any]:
    times = [float(row["response_ms"]) for row in rows]
    statuses = Counter(row["status"] for row in rows)
    return {
        "requests": len(rows),
        "failures": sum(1 for row in rows if row["ok"] != "1"),
        "statuses": dict(sorted(statuses.items())),
        "mean_ms": mean(times),
        "p95_ms": percentile(times, 95),
        "max_ms": max(times, default=None),
    }


def job_summary(jobs: list[dict[str, str]], seconds: float) -> dict[str, Any]:
    """End-to-end jobs (submit to result bytes, client clock): latency of the succeeded ones, outcomes."""
    done = [row for row in jobs if row["outcome"] == "succeeded"]
    latency = [float(row["latency_s"]) for row in done]
    server = [value for row in done if (value := number(row.get("server_latency_s"))) is not None]
    return {
        "jobs": len(jobs),
        "succeeded": len(done),
        "outcomes": dict(sorted(Counter(row["outcome"] for row in jobs).items())),
        "mean_s": mean(latency),
        "p50_s": percentile(latency, 50),
        "p95_s": percentile(latency, 95),
        "max_s": max(latency, default=None),
        "server_mean_s": mean(server),
        "deduplicated": sum(1 for row in jobs if row.get("deduplicated") == "1"),
        "shed_503": sum(int(row.get("shed_503") or 0) for row in jobs),
        "shed_429": sum(int(row.get("shed_429") or 0) for row in jobs),
        "per_minute": len(done) * 60 / seconds if seconds > 0 else None,
        "sizes": dict(sorted(Counter(f"{row['width']}x{row['height']}" for row in done).items())),
    }


# ---------------------------------------------------------------------------------------------- steps
def step_table(jobs: list[dict[str, str]], steps: list[int], step_s: float, factor: float) -> dict[str, Any]:
    """Per user count of a step ramp: jobs, failures, sheds, latency, and whether the step was stable.

    Stable: at least one job finished, none failed, none was shed (503) or refused (429), and p95 latency within
    ``factor`` x the median latency of the first step (beyond that, latency grows with the users instead of
    being bounded by the service). The maximum stable concurrency is the last stable step before the first
    unstable one.
    """
    rows, baseline, max_stable, broken = [], None, 0, False
    for users in steps:
        group = [row for row in jobs if row.get("users") == str(users)]
        done = [float(row["latency_s"]) for row in group if row["outcome"] == "succeeded"]
        failed = sum(1 for row in group if row["outcome"] != "succeeded")
        shed = sum(int(row.get("shed_503") or 0) + int(row.get("shed_429") or 0) for row in group)
        p50, p95 = percentile(done, 50), percentile(done, 95)
        if baseline is None:
            baseline = p50
        bounded = p95 is not None and baseline is not None and p95 <= factor * baseline
        stable = bool(done) and failed == 0 and shed == 0 and bounded
        if stable and not broken:
            max_stable = users
        broken = broken or not stable
        reason = "" if stable else ("no job finished" if not done else "failures" if failed else "shed" if shed else "")
        rows.append(
            {
                "users": users,
                "jobs": len(group),
                "succeeded": len(done),
                "failed": failed,
                "shed_503": shed,
                "p50_s": p50,
                "p95_s": p95,
                "per_minute": len(done) * 60 / step_s if step_s else None,
                "stable": stable,
                "why_not": reason or ("" if stable else f"p95 over {factor:g} x step-1 median"),
            }
        )
    return {"rows": rows, "max_stable": max_stable, "all_stable": not broken, "factor": factor, "baseline_s": baseline}


# -------------------------------------------------------------------------------------------- metrics
def value_at(points: list[tuple[float, float]], t: float) -> float | None:
    """The last value sampled at or before ``t``."""
    before = [value for when, value in points if when <= t]
    return before[-1] if before else None


def counter_delta(series: Series | None, start: float, end: float) -> float | None:
    """Increase of a counter (summed over label sets) between ``start`` and ``end``; None when absent.

    A label set first seen after ``start`` (a process born during the run) counts from zero.
    """
    if not series:
        return None
    total = 0.0
    for points in series.values():
        last = value_at(points, end)
        if last is not None:
            total += last - (value_at(points, start) or 0.0)
    return total


def gauge_peak(series: Series | None, start: float, end: float) -> float | None:
    """Highest value of a gauge (summed over label sets per sample time) within the window."""
    if not series:
        return None
    sums: dict[float, float] = defaultdict(float)
    for points in series.values():
        for when, value in points:
            if start <= when <= end:
                sums[when] += value
    return max(sums.values(), default=None)


def peaks_by_labels(series: Series | None) -> dict[str, float]:
    return {labels: max(value for _, value in points) for labels, points in (series or {}).items() if points}


def histogram(text: str, name: str) -> dict[str, Any] | None:
    """``{"buckets": {le: cumulative count}, "sum", "count"}`` of a histogram in an exposition (labels summed)."""
    buckets: dict[float, float] = defaultdict(float)
    found = {"sum": 0.0, "count": 0.0}
    seen = False
    for sample_name, labels, value in parse_samples(text) if text else []:
        if sample_name == f"{name}_bucket":
            buckets[float(labels["le"])] += value
            seen = True
        elif sample_name in (f"{name}_sum", f"{name}_count"):
            found[sample_name.rsplit("_", 1)[1]] += value
    return {"buckets": dict(sorted(buckets.items())), **found} if seen else None


def histogram_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    """The observations made between two scrapes of the same histogram."""
    if after is None:
        return None
    if before is None:
        return after
    buckets = {le: count - before["buckets"].get(le, 0.0) for le, count in after["buckets"].items()}
    return {"buckets": buckets, "sum": after["sum"] - before["sum"], "count": after["count"] - before["count"]}


def histogram_stats(hist: dict[str, Any] | None) -> dict[str, Any] | None:
    """Mean and an upper bound of the largest observation (the first bucket holding every observation)."""
    if not hist or hist["count"] <= 0:
        return None
    upper = next((le for le, count in hist["buckets"].items() if count >= hist["count"]), math.inf)
    return {"count": hist["count"], "mean": hist["sum"] / hist["count"], "max_at_most": upper}


# ------------------------------------------------------------------------------------------ processes
def process_summary(rows: list[dict[str, str]], start: float, end: float) -> dict[str, Any]:
    """psutil's view: per process peak RSS, CPU and disk bytes during the window; peak of the stack's RSS sum.

    The load generator (``locust``) and the runner are sampled too but kept out of the stack's totals.
    """
    per_pid: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        per_pid[row["pid"]].append(row)
    processes: list[dict[str, Any]] = []
    rss_by_time: dict[str, float] = defaultdict(float)
    for pid, samples in per_pid.items():
        inside = [row for row in samples if start <= float(row["t"]) <= end] or samples
        first = samples[0] if float(samples[0]["t"]) <= start else None

        def grew(key: str, inside: list[dict[str, str]] = inside, first: dict[str, str] | None = first) -> float:
            return float(inside[-1][key]) - (float(first[key]) if first else 0.0)

        component = samples[-1]["component"]
        processes.append(
            {
                "pid": int(pid),
                "component": component,
                "name": samples[-1]["name"],
                "peak_rss_bytes": max(float(row["rss_bytes"]) for row in samples),
                "cpu_s": grew("cpu_s"),
                "read_bytes": grew("read_bytes"),
                "write_bytes": grew("write_bytes"),
            }
        )
        if component not in ("locust", "runner"):
            for row in inside:
                rss_by_time[row["t"]] += float(row["rss_bytes"])
    stack = [proc for proc in processes if proc["component"] not in ("locust", "runner")]
    workers: list[float] = [proc["peak_rss_bytes"] for proc in stack if proc["component"] == "worker"]
    return {
        "processes": sorted(processes, key=lambda proc: (proc["component"], proc["pid"])),
        "peak_rss_sum_bytes": max(rss_by_time.values(), default=None),
        "worker_peak_rss_bytes": max(workers, default=None),
        "read_bytes": sum(proc["read_bytes"] for proc in stack) if stack else None,
        "write_bytes": sum(proc["write_bytes"] for proc in stack) if stack else None,
        "cpu_s": sum(proc["cpu_s"] for proc in stack) if stack else None,
        "observer_cpu_s": sum(proc["cpu_s"] for proc in processes if proc not in stack),
    }


def host_summary(rows: list[dict[str, str]], start: float, end: float, stack_cpu_s: float | None) -> dict[str, Any]:
    """Host CPU over the window: iowait seconds, how busy, and how much of it other programs used."""
    inside = [row for row in rows if start <= float(row["t"]) <= end]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    total = float(last["total_s"]) - float(first["total_s"])
    busy = float(last["busy_s"]) - float(first["busy_s"])
    iowait = (number(last["iowait_s"]) or 0.0) - (number(first["iowait_s"]) or 0.0)
    result = {
        "seconds": float(last["t"]) - float(first["t"]),
        "busy_share": busy / total if total else None,
        "iowait_s": iowait,
        "iowait_share": iowait / total if total else None,
        "load1_max": max(float(row["load1"]) for row in inside),
    }
    if stack_cpu_s is not None and total:
        result["stack_share"] = stack_cpu_s / total
    return result


def metrics_summary(data: RunData) -> dict[str, Any]:
    """What the service's own metrics said during the window; ``None`` marks a metric it does not export."""
    start, end = data.window
    series = data.metrics
    peak_rss = histogram_stats(
        histogram_delta(histogram(data.start_scrape, JOB_PEAK_RSS), histogram(data.end_scrape, JOB_PEAK_RSS))
    )
    rss = series.get(RSS)
    by_component: dict[str, float] = {}
    for labels, peak in peaks_by_labels(rss).items():
        component = parse_labels(labels).get("component", "?")
        by_component[component] = max(by_component.get(component, 0.0), peak)
    return {
        "present": sorted(series),
        "absent": [
            name for name in (RSS, JOB_PEAK_RSS, IOWAIT, QUEUE_DEPTH, DISK_READ, DISK_WRITE) if not _has(data, name)
        ],
        "job_peak_rss": peak_rss,
        "rss_peak_by_component": by_component or None,
        "rss_peak_sum": gauge_peak(rss, start, end),
        "iowait_s": counter_delta(series.get(IOWAIT), start, end),
        "queue_depth_max": gauge_peak(series.get(QUEUE_DEPTH), start, end),
        "jobs_running_max": gauge_peak(series.get(JOBS_RUNNING), start, end),
        "disk_read_bytes": counter_delta(series.get(DISK_READ), start, end),
        "disk_write_bytes": counter_delta(series.get(DISK_WRITE), start, end),
        "dedup_hits": counter_delta(series.get(DEDUP_HITS), start, end),
        "redis_memory_peak": gauge_peak(series.get(REDIS_MEMORY), start, end),
    }


def _has(data: RunData, name: str) -> bool:
    return name in data.metrics or (name == JOB_PEAK_RSS and histogram(data.end_scrape, name) is not None)
