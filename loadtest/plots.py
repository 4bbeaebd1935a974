"""The report's PNG plots (matplotlib, Agg backend: no display needed). Time axes are seconds since load start.

One function per picture; each draws what the run folder has and says "absent" on the plot for data the
service did not export, so a report always has the same five pictures.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: the runner has no display

import matplotlib.pyplot as plt

from loadtest.analysis import (
    DISK_READ,
    DISK_WRITE,
    JOBS_RUNNING,
    QUEUE_DEPTH,
    RSS,
    RunData,
    percentile,
    read_csv,
)
from loadtest.sampler import parse_labels

FIGSIZE = (8.0, 3.2)
DPI = 90
MB = 1024 * 1024
MAIN_ROUTES = ("POST /stylize", "GET /jobs/[id]", "GET /jobs/[id]/result")


def _figure(rows: int = 1) -> tuple[Any, Any]:
    fig, axes = plt.subplots(rows, 1, figsize=(FIGSIZE[0], FIGSIZE[1] * (1 + 0.6 * (rows - 1))), sharex=True)
    return fig, axes


def _save(fig: Any, path: Path, bottom: Any) -> None:
    bottom.set_xlabel("seconds since load start")
    for ax in fig.get_axes():
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _absent(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: absent", ha="center", va="center", transform=ax.transAxes, color="grey")


def _binned(points: list[tuple[float, float]], width: float) -> dict[float, list[float]]:
    bins: dict[float, list[float]] = defaultdict(list)
    for t, value in points:
        bins[(t // width) * width + width / 2].append(value)
    return dict(sorted(bins.items()))


def latency(data: RunData, path: Path) -> None:
    """Job latency per job (by finish time) and HTTP p50/p95 per route in 5 s bins, with the user count."""
    t0 = data.window[0]
    fig, (top, bottom) = _figure(2)
    for outcome, style in (
        ("succeeded", {"marker": ".", "color": "tab:blue"}),
        ("other", {"marker": "x", "color": "tab:red"}),
    ):
        rows = [row for row in data.jobs if (row["outcome"] == "succeeded") == (outcome == "succeeded")]
        if rows:
            x = [float(row["finished_at"]) - t0 for row in rows]
            top.scatter(x, [float(row["latency_s"]) for row in rows], s=10, label=f"job {outcome}", **style)
    if not data.jobs:
        _absent(top, "jobs")
    top.set_ylabel("job latency (s)")
    users = read_csv(data.folder / "locust_stats_history.csv")
    if users:
        twin = top.twinx()
        points = [
            (float(row["Timestamp"]) - t0, float(row["User Count"])) for row in users if row["Name"] == "Aggregated"
        ]
        twin.step([t for t, _ in points], [u for _, u in points], where="post", color="grey", alpha=0.6, label="users")
        twin.set_ylabel("users")
    top.legend(loc="upper left", fontsize=7)
    for route in MAIN_ROUTES:
        method, name = route.split(" ", 1)
        points = [
            (float(r["t"]) - t0, float(r["response_ms"]))
            for r in data.requests
            if (r["method"], r["name"]) == (method, name)
        ]
        bins = _binned(points, 5.0)
        if bins:
            line = bottom.plot(list(bins), [percentile(v, 50) for v in bins.values()], label=f"{route} p50")[0]
            bottom.plot(
                list(bins), [percentile(v, 95) for v in bins.values()], "--", color=line.get_color(), label="p95"
            )
    bottom.set_ylabel("HTTP (ms)")
    bottom.set_yscale("symlog", linthresh=10)
    if bottom.get_lines():
        bottom.legend(loc="best", fontsize=6, ncol=3)
    else:
        _absent(bottom, "HTTP requests")
    _save(fig, path, bottom)


def throughput(data: RunData, path: Path) -> None:
    """Jobs finished per minute and HTTP responses per second by status class, in 10 s bins."""
    t0 = data.window[0]
    fig, (top, bottom) = _figure(2)
    done = [(float(row["finished_at"]) - t0, 1.0) for row in data.jobs if row["outcome"] == "succeeded"]
    bins = _binned(done, 10.0)
    top.bar(list(bins), [len(v) * 6 for v in bins.values()], width=9, color="tab:green")
    top.set_ylabel("jobs / min")
    if not bins:
        _absent(top, "finished jobs")
    classes: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in data.requests:
        if row["method"] != "JOB":
            status = int(row["status"])
            label = "503" if status == 503 else "error" if status == 0 else f"{status // 100}xx"
            classes[label].append((float(row["t"]) - t0, 1.0))
    for label in sorted(classes):
        per_bin = _binned(classes[label], 10.0)
        bottom.plot(list(per_bin), [len(v) / 10 for v in per_bin.values()], marker=".", label=label)
    bottom.set_ylabel("HTTP responses / s")
    if classes:
        bottom.legend(loc="upper left", fontsize=7, ncol=5)
    _save(fig, path, bottom)


def _metric_lines(ax: Any, data: RunData, name: str, label: str, scale: float = 1.0) -> bool:
    t0, drew = data.window[0], False
    for labels, points in sorted(data.metrics.get(name, {}).items()):
        tag = ",".join(f"{k}={v}" for k, v in parse_labels(labels).items())
        ax.plot([t - t0 for t, _ in points], [v / scale for _, v in points], label=f"{label} {tag}".strip())
        drew = True
    return drew


def queue_depth(data: RunData, path: Path) -> None:
    fig, ax = _figure()
    drew = _metric_lines(ax, data, QUEUE_DEPTH, "queue depth")
    drew = _metric_lines(ax, data, JOBS_RUNNING, "jobs running") or drew
    if drew:
        ax.legend(loc="upper left", fontsize=7)
    else:
        _absent(ax, f"{QUEUE_DEPTH} / {JOBS_RUNNING}")
    ax.set_ylabel("jobs")
    _save(fig, path, ax)


def rss(data: RunData, path: Path) -> None:
    """RSS per process from psutil (solid) and from the service's metric when exported (dashed)."""
    t0 = data.window[0]
    fig, ax = _figure()
    per_pid: dict[str, list[tuple[float, float]]] = defaultdict(list)
    names: dict[str, str] = {}
    for row in data.processes:
        per_pid[row["pid"]].append((float(row["t"]) - t0, float(row["rss_bytes"]) / MB))
        names[row["pid"]] = row["component"]
    biggest = sorted(per_pid, key=lambda pid: -max(v for _, v in per_pid[pid]))[:8]
    for pid in biggest:
        ax.plot([t for t, _ in per_pid[pid]], [v for _, v in per_pid[pid]], label=f"{names[pid]} {pid}")
    for labels, points in sorted(data.metrics.get(RSS, {}).items()):
        tag = parse_labels(labels)
        ax.plot(
            [t - t0 for t, _ in points],
            [v / MB for _, v in points],
            "--",
            lw=1,
            label=f"metric {tag.get('component', '')} {tag.get('pid', '')}",
        )
    if ax.get_lines():
        ax.legend(loc="upper left", fontsize=6, ncol=3)
    else:
        _absent(ax, "process RSS")
    ax.set_ylabel("RSS (MB)")
    _save(fig, path, ax)


def disk_io(data: RunData, path: Path) -> None:
    """Cumulative disk bytes read/written by the stack since load start, and host iowait seconds."""
    t0 = data.window[0]
    fig, (top, bottom) = _figure(2)
    first: dict[str, tuple[float, float]] = {}
    totals: dict[float, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in data.processes:
        if row["component"] in ("locust", "runner"):
            continue
        read, write = float(row["read_bytes"]), float(row["write_bytes"])
        base = first.setdefault(row["pid"], (read, write) if float(row["t"]) <= t0 else (0.0, 0.0))
        totals[float(row["t"]) - t0][0] += (read - base[0]) / MB
        totals[float(row["t"]) - t0][1] += (write - base[1]) / MB
    if totals:
        times = sorted(totals)
        top.plot(times, [totals[t][0] for t in times], label="read (psutil)")
        top.plot(times, [totals[t][1] for t in times], label="write (psutil)")
    for name, label in ((DISK_READ, "read (metric)"), (DISK_WRITE, "write (metric)")):
        sums: dict[float, float] = defaultdict(float)
        for points in data.metrics.get(name, {}).values():
            start = next((v for t, v in points if t <= t0), 0.0)
            for t, v in points:
                sums[t - t0] += (v - start) / MB
        if sums:
            top.plot(sorted(sums), [sums[t] for t in sorted(sums)], "--", label=label)
    top.set_ylabel("MB since start")
    if top.get_lines():
        top.legend(loc="upper left", fontsize=7, ncol=2)
    else:
        _absent(top, "disk IO")
    host = [(float(row["t"]) - t0, float(row["iowait_s"])) for row in data.host if row["iowait_s"]]
    if host:
        zero = next((v for t, v in host if t >= 0), host[0][1])
        bottom.plot([t for t, _ in host], [v - zero for _, v in host], color="tab:purple", label="host iowait")
        bottom.legend(loc="upper left", fontsize=7)
    else:
        _absent(bottom, "host iowait")
    bottom.set_ylabel("iowait (s)")
    _save(fig, path, bottom)


PLOTS = {
    "latency.png": latency,
    "throughput.png": throughput,
    "queue_depth.png": queue_depth,
    "rss.png": rss,
    "disk_io.png": disk_io,
}


def draw_all(data: RunData) -> list[str]:
    """Every plot into the run folder; returns the file names."""
    for filename, draw in PLOTS.items():
        draw(data, data.folder / filename)
    return list(PLOTS)
