"""The scrape handler's registry: every process of the multiprocess directory (or this one), plus host figures.

With ``PROMETHEUS_MULTIPROC_DIR`` set, each scrape builds a fresh ``MultiProcessCollector`` that
first marks dead processes (pids gone from /proc) so their live gauges disappear even when they
were SIGKILLed. ``PROMETHEUS_MULTIPROC_DIR`` is read here (the one variable the launchers set for
prometheus_client, not a setting of ours).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from telemetry.families import RSS_NAME
from telemetry.host import HostCollector
from telemetry.process import process_alive


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class LiveMultiProcessCollector(Collector):
    """``MultiProcessCollector`` that first marks dead processes, and lists only processes that reported RSS."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._merged = MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        mark_dead_processes(self._path)
        for metric in self._merged.collect():  # type: ignore[no-untyped-call]
            if metric.name == RSS_NAME:
                # A forked child's file holds its parent's RSS entry reset to 0 (prometheus_client
                # re-creates every value after a fork): 0 is never a real RSS, so it is dropped.
                metric.samples = [s for s in metric.samples if s.value > 0]
            yield metric


class _DefaultRegistry(Collector):
    """The process's default registry as one collector (single-process mode)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def _file_pids(path: str, pattern: str) -> set[int]:
    pids = set()
    for name in glob.glob(os.path.join(path, pattern)):
        stem = os.path.basename(name).removesuffix(".db")
        with_pid = stem.rsplit("_", 1)[-1]
        if with_pid.isdigit():
            pids.add(int(with_pid))
    return pids


def mark_dead_processes(path: str) -> list[int]:
    """``mark_process_dead`` for every pid with live-gauge files that no longer runs; returns them."""
    dead = sorted(pid for pid in _file_pids(path, "gauge_live*_*.db") if not process_alive(pid))
    for pid in dead:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return dead


def remove_stale_files(path: str) -> list[str]:
    """At start-up: delete the files of processes that no longer run (an earlier run's counts).

    Files of running processes stay, so this is safe when several launchers share the directory.
    Only for start-up: during a run the files of exited processes carry counts that must stay.
    """
    removed = []
    for name in glob.glob(os.path.join(path, "*.db")):
        stem = os.path.basename(name).removesuffix(".db")
        pid = stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            os.remove(name)
            removed.append(name)
    return removed


def exposition(*extra: Collector) -> tuple[bytes, str]:
    """The text exposition of every process sharing the multiprocess directory (or of this one), plus ``extra``."""
    return generate_latest(scrape_registry(*extra)), CONTENT_TYPE_LATEST


def scrape_registry(*extra: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    path = multiprocess_dir()
    registry.register(LiveMultiProcessCollector(path) if path else _DefaultRegistry())
    registry.register(HostCollector())
    for collector in extra:
        registry.register(collector)
    return registry
