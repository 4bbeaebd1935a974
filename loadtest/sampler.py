"""Sampling during a load run, about once a second: the service's ``/metrics`` and the stack's processes.

``/metrics`` is parsed with ``prometheus_client.parser``; a family the service does not export is simply
absent from the samples (the report says so), never an error. The processes are read with psutil as a
cross-check that does not depend on the service's own metrics: RSS, CPU seconds and disk bytes per process.
Rows go to CSV files in the report folder as they are taken:

- ``metrics.csv``: ``t, name, labels, value`` for every ``animegan_*`` sample except histogram buckets;
- ``processes.csv``: ``t, pid, ppid, component, name, rss_bytes, cpu_s, read_bytes, write_bytes, fds``;
- ``host.csv``: ``t, busy_s, iowait_s, total_s, load1`` (host CPU seconds from /proc/stat via psutil).
"""

from __future__ import annotations

import csv
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from loadtest.tempfiles import TempWatch

logger = logging.getLogger(__name__)

PREFIX = "animegan_"
Sample = tuple[str, dict[str, str], float]


def parse_samples(text: str, prefix: str = PREFIX) -> list[Sample]:
    """``(name, labels, value)`` of every sample in a Prometheus text exposition whose name starts with ``prefix``."""
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(prefix)
    ]


def format_labels(labels: dict[str, str]) -> str:
    """``{"b": "2", "a": "1"}`` -> ``"a=1;b=2"`` (stable, CSV-friendly)."""
    return ";".join(f"{key}={labels[key]}" for key in sorted(labels))


def parse_labels(text: str) -> dict[str, str]:
    """Inverse of :func:`format_labels`."""
    return dict(part.split("=", 1) for part in text.split(";") if part)


def scrape(url: str, timeout: float = 3.0, key: str | None = None) -> str | None:
    """The ``/metrics`` text, or None when the endpoint does not answer 200; ``key``: the API key to send."""
    request = urllib.request.Request(url.rstrip("/") + "/metrics")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return str(response.read().decode("utf-8"))
    except (OSError, urllib.error.URLError):
        return None


# What ``classify`` says when it cannot tell yet: the process exited, or its command line is still
# empty (read between fork and exec). Neither is remembered, so the next sample classifies again.
UNSETTLED = frozenset({"gone", "unknown"})


def classify(process: psutil.Process) -> str:
    """A component name from the command line, when the metrics do not say which pid is which."""
    try:
        line = " ".join(process.cmdline()).lower()
    except psutil.Error:
        return "gone"
    if not line.strip():
        return "unknown"
    for needle, component in (("redis-server", "redis"), ("celery", "worker"), ("worker", "worker")):
        if needle in line:
            return component
    if "uvicorn" in line or " api" in line:
        return "api"
    return "serve" if "serve" in line else "other"


class CsvLog:
    """One CSV file with a header, flushed row by row so a killed run still leaves its data."""

    def __init__(self, path: Path, fields: Iterable[str]) -> None:
        self.handle: IO[str] = open(path, "w", newline="", buffering=1)  # noqa: SIM115
        self.writer = csv.writer(self.handle)
        self.writer.writerow(list(fields))

    def write(self, row: Iterable[Any]) -> None:
        self.writer.writerow(list(row))

    def close(self) -> None:
        self.handle.close()


class Sampler(threading.Thread):
    """Background thread: every ``interval`` seconds, one metrics scrape and one process pass."""

    def __init__(
        self,
        *,
        url: str,
        folder: Path,
        processes: Callable[[], list[psutil.Process]] | None,
        temp: TempWatch | None,
        interval: float = 1.0,
        key: str | None = None,
    ) -> None:
        super().__init__(name="loadtest-sampler", daemon=True)
        self.url, self.folder, self.processes, self.temp, self.interval = url, folder, processes, temp, interval
        self.key = key  # an API key for /metrics when the service has a keys file
        self._stop_event = threading.Event()
        self.metrics = CsvLog(folder / "metrics.csv", ("t", "name", "labels", "value"))
        fields = ("t", "pid", "ppid", "component", "name", "rss_bytes", "cpu_s", "read_bytes", "write_bytes", "fds")
        self.procs = CsvLog(folder / "processes.csv", fields)
        self.host = CsvLog(folder / "host.csv", ("t", "busy_s", "iowait_s", "total_s", "load1"))
        self.components: dict[int, str] = {}
        # Sampled for the CPU account but not part of the stack: the load generator, the runner itself.
        self.observers: list[psutil.Process] = []
        self.scrapes = self.failed_scrapes = 0

    def watch(self, process: psutil.Process, component: str) -> None:
        """Sample ``process`` too, under ``component``, outside the stack's totals."""
        self.components[process.pid] = component
        self.observers.append(process)

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # a sampling hiccup must not end the run; the gap shows in the data
                logger.exception("sampling tick failed")
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        """Stop the thread, take one last sample, close the files."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=30)
        self.tick()
        for log in (self.metrics, self.procs, self.host):
            log.close()

    def save_scrape(self, filename: str) -> None:
        """Keep one raw exposition (histogram buckets included) in the report folder."""
        text = scrape(self.url, key=self.key)
        (self.folder / filename).write_text(text if text is not None else "# /metrics did not answer\n")

    def tick(self) -> None:
        now = round(time.time(), 3)
        self._sample_metrics(now)
        self._sample_host(now)
        stack = self.processes() if self.processes is not None else []
        self._sample_processes(now, stack + self.observers)
        if self.temp is not None:
            self.temp.observe(stack)

    def _sample_metrics(self, now: float) -> None:
        text = scrape(self.url, key=self.key)
        if text is None:
            self.failed_scrapes += 1
            return
        self.scrapes += 1
        try:
            samples = parse_samples(text)
        except ValueError:
            self.failed_scrapes += 1
            logger.warning("unparsable /metrics answer", extra={"bytes": len(text)})
            return
        for name, labels, value in samples:
            if name.endswith(("_bucket", "_created")):
                continue
            pid = labels.get("pid", "")
            if "component" in labels and pid.isdigit() and int(pid) not in {p.pid for p in self.observers}:
                self.components[int(pid)] = labels["component"]
            self.metrics.write((now, name, format_labels(labels), value))

    def _sample_host(self, now: float) -> None:
        cpu = psutil.cpu_times()._asdict()
        # guest time is already inside user time on Linux: leave it out of the sum
        total = sum(
            cpu.get(key, 0.0) for key in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
        )
        busy = total - cpu["idle"] - cpu.get("iowait", 0.0)
        self.host.write((now, round(busy, 2), cpu.get("iowait", ""), round(total, 2), os.getloadavg()[0]))

    def _sample_processes(self, now: float, processes: list[psutil.Process]) -> None:
        for process in processes:
            try:
                with process.oneshot():
                    memory, cpu, disk = process.memory_info(), process.cpu_times(), process.io_counters()
                    identity = (process.pid, process.ppid(), self._component(process), process.name())
                    usage = (memory.rss, round(cpu.user + cpu.system, 2), disk.read_bytes, disk.write_bytes)
                    self.procs.write((now, *identity, *usage, process.num_fds()))
            except psutil.Error:  # exited between listing and reading: the next tick no longer lists it
                continue

    def _component(self, process: psutil.Process) -> str:
        known = self.components.get(process.pid)
        if known is not None:
            return known
        component = classify(process)
        if component not in UNSETTLED:
            self.components[process.pid] = component
        return component
