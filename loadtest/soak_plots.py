"""The soak's pictures: RSS of every process, Redis memory against its plateau, latency percentiles over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest import plots  # sets the Agg backend before pyplot is imported
from loadtest.analysis import REDIS_MEMORY, RunData
from loadtest.soak import MAX_REDIS_MEMORY, rss_series, worker_children

MB = plots.MB
PLOTS = ("soak_rss.png", "soak_redis.png", "soak_latency.png")


def _shade_tail(ax: Any, soak: dict[str, Any]) -> None:
    ax.axvspan(soak["tail_from_s"], soak["window_s"], color="grey", alpha=0.08, label="last two thirds")


def rss(data: RunData, soak: dict[str, Any], path: Path) -> None:
    t0 = data.window[0]
    fig, ax = plots._figure()
    series = rss_series(data.processes)
    children = worker_children(series)
    for pid, entry in sorted(series.items()):
        kind = "worker child" if pid in children else entry["component"]
        points = entry["points"]
        ax.plot([t - t0 for t, _ in points], [v / MB for _, v in points], lw=1, label=f"{kind} {pid}")
    _shade_tail(ax, soak)
    ax.set_ylabel("RSS (MB, psutil)")
    ax.legend(loc="upper left", fontsize=6, ncol=3)
    plots._save(fig, path, ax)


def redis(data: RunData, soak: dict[str, Any], path: Path) -> None:
    t0 = data.window[0]
    fig, ax = plots._figure()
    for points in data.metrics.get(REDIS_MEMORY, {}).values():
        ax.plot([t - t0 for t, _ in points], [v / MB for _, v in points], lw=1, label="used_memory")
    plateau = soak["redis"]
    if plateau["level"]:
        level, band = plateau["level"] / MB, plateau["tolerance"] * plateau["level"] / MB
        ax.axhline(level, color="tab:green", ls="--", lw=1, label=f"plateau {level:.0f} MB")
        ax.axhspan(level - band, level + band, color="tab:green", alpha=0.1)
    if plateau["reached_after_s"] is not None:
        ax.axvline(plateau["reached_after_s"], color="tab:green", ls=":", lw=1, label="plateau reached")
    for points in data.metrics.get(MAX_REDIS_MEMORY, {}).values():
        if points and points[-1][1] > 0:
            ax.axhline(points[-1][1] / MB, color="tab:red", lw=1, label="maxmemory")
    _shade_tail(ax, soak)
    ax.set_ylabel("Redis memory (MB)")
    ax.legend(loc="lower right", fontsize=7)
    plots._save(fig, path, ax)


def latency(soak: dict[str, Any], path: Path) -> None:
    fig, ax = plots._figure()
    bins = soak["latency"]
    centres = [row["from_s"] for row in bins]
    for key in ("p50_s", "p95_s", "p99_s"):
        ax.step(centres, [row[key] for row in bins], where="post", label=key.removesuffix("_s"))
    _shade_tail(ax, soak)
    ax.set_ylabel("job latency (s), per 2 min of finish time")
    ax.legend(loc="upper left", fontsize=7)
    plots._save(fig, path, ax)


def draw_all(data: RunData, soak: dict[str, Any]) -> list[str]:
    rss(data, soak, data.folder / PLOTS[0])
    redis(data, soak, data.folder / PLOTS[1])
    latency(soak, data.folder / PLOTS[2])
    return list(PLOTS)
