"""Process and host figures read from /proc, and the metric families built on them.

Shared by the gateway and the workers (both import it; it needs neither torch nor celery):

* ``animegan_process_resident_memory_bytes{component, pid}``: each process writes its own RSS,
  so a scrape of any process in the multiprocess directory shows every live one. The standard
  process collector cannot do that: in multiprocess mode it would report the scraping process only.
* ``animegan_process_disk_{read,write}_bytes_total{component}``: ``read_bytes``/``write_bytes``
  of ``/proc/self/io`` (bytes that really went to or came from storage, not the page cache),
  mirrored as counters; summed over processes, kept after a process exits.
* ``animegan_host_cpu_iowait_seconds_total`` and ``animegan_host_cpus``: read from /proc/stat at
  scrape time by a custom collector (host-wide figures: no per-process files needed).
* ``PeakRss``: the peak RSS of this process over one job.
* ``exposition()``: the scrape handler's registry: with ``PROMETHEUS_MULTIPROC_DIR`` set, a fresh
  ``MultiProcessCollector`` per scrape that first marks dead processes (pids gone from /proc) so
  their live gauges disappear even when they were SIGKILLed.

Linux only, like the service. ``PROMETHEUS_MULTIPROC_DIR`` is read here (the one variable the
launchers set for prometheus_client, not a setting of ours).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

NAMESPACE = "animegan"
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Interval of the fallback peak sampler when the kernel's peak counter cannot be reset.
PEAK_SAMPLE_INTERVAL_S = 0.025

RSS = Gauge(
    "process_resident_memory_bytes",
    "Resident set size of a live animegan process (api, worker pool child, worker_main).",
    ["component", "pid"],
    namespace=NAMESPACE,
    # liveall: one series per process, removed when the process is marked dead.
    multiprocess_mode="liveall",
)
DISK_READ = Counter(
    "process_disk_read_bytes",
    "Bytes animegan processes read from storage (/proc/<pid>/io read_bytes).",
    ["component"],
    namespace=NAMESPACE,
)
DISK_WRITE = Counter(
    "process_disk_write_bytes",
    "Bytes animegan processes caused to be written to storage (/proc/<pid>/io write_bytes).",
    ["component"],
    namespace=NAMESPACE,
)
_RSS_NAME = f"{NAMESPACE}_process_resident_memory_bytes"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# -- /proc readers ------------------------------------------------------------------------------


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (second field of /proc/<pid>/statm, in pages)."""
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * PAGE_BYTES


def peak_rss_bytes() -> int:
    """VmHWM of this process: its peak RSS since start or since the last ``reset_peak_rss()``."""
    return _status_kib("VmHWM") * 1024


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if match is None:
        raise OSError(f"no {field} in /proc/self/status")
    return int(match.group(1))


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/self/clear_refs``, Linux 4.0+); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        # A kernel that accepts the write but ignores the value leaves the old peak in place.
        return _status_kib("VmHWM") <= _status_kib("VmRSS") + 4096
    except OSError:
        return False


def io_bytes(pid: int | str = "self") -> tuple[int, int]:
    """(read_bytes, write_bytes) of /proc/<pid>/io: storage traffic, page-cache hits excluded."""
    values = dict(line.split(": ", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines() if ": " in line)
    return int(values["read_bytes"]), int(values["write_bytes"])


def host_cpu_times(stat_text: str | None = None) -> tuple[float, int]:
    """(iowait seconds summed over CPUs, number of CPUs) from /proc/stat (or the given text)."""
    text = Path("/proc/stat").read_text() if stat_text is None else stat_text
    iowait_ticks = 0
    cpus = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            # cpu  user nice system idle iowait irq softirq steal guest guest_nice
            iowait_ticks = int(line.split()[5])
        elif re.match(r"cpu\d+ ", line):
            cpus += 1
    return iowait_ticks / CLOCK_TICKS, cpus


def process_alive(pid: int) -> bool:
    """True while /proc/<pid> exists and is not a zombie (an exited child its parent has not reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


# -- this process's figures as metrics ------------------------------------------------------------


class ProcessStats:
    """Mirrors this process's RSS and disk IO into the shared families; ``sample()`` refreshes them."""

    def __init__(self, component: str) -> None:
        self.component = component
        self._pid = os.getpid()
        self._io_seen = (0, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        with self._lock:
            pid = os.getpid()
            if pid != self._pid:
                # A forked copy: the kernel's IO counters restart from zero in the child.
                self._pid, self._io_seen = pid, (0, 0)
            RSS.labels(self.component, str(pid)).set(rss_bytes())
            read, write = io_bytes()
            # Counters only go up; a decrease cannot happen for one pid, but guard anyway.
            DISK_READ.labels(self.component).inc(max(0, read - self._io_seen[0]))
            DISK_WRITE.labels(self.component).inc(max(0, write - self._io_seen[1]))
            self._io_seen = (read, write)

    def start(self, interval_s: float) -> None:
        """Sample now and then every ``interval_s`` from a daemon thread (never in a process that forks)."""
        self.sample()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(interval_s,), name="animegan-procstats", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.sample()
            except OSError:
                logger.warning("could not read process statistics", exc_info=True)


class PeakRss:
    """Peak RSS of this process between ``start()`` and ``stop()`` (one job at a time per process).

    The kernel keeps the peak (VmHWM) for the life of the process, so a long-lived pool child
    would report its all-time peak. ``start()`` resets it through /proc/self/clear_refs; where the
    kernel refuses, a thread samples RSS every ``PEAK_SAMPLE_INTERVAL_S`` instead (and may then
    miss a spike shorter than that).
    """

    def __init__(self, *, sample_interval_s: float = PEAK_SAMPLE_INTERVAL_S, use_clear_refs: bool = True) -> None:
        self._interval = sample_interval_s
        self._use_clear_refs = use_clear_refs
        self._sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.method = ""

    def start(self) -> None:
        if self._use_clear_refs and reset_peak_rss():
            self.method = "clear_refs"
            return
        self.method = "sampling"
        self._sampled = rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="animegan-peak-rss", daemon=True)
        self._thread.start()

    def stop(self) -> int:
        if self._thread is None:
            return max(peak_rss_bytes(), rss_bytes())
        self._stop.set()
        self._thread.join()
        self._thread = None
        return max(self._sampled, rss_bytes())

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._sampled = max(self._sampled, rss_bytes())


# -- exposition -------------------------------------------------------------------------------------


class HostCollector(Collector):
    """Host CPU iowait as a counter, read from /proc/stat at each scrape."""

    def collect(self) -> Iterator[Metric]:
        iowait_s, cpus = host_cpu_times()
        iowait = CounterMetricFamily(
            f"{NAMESPACE}_host_cpu_iowait_seconds",
            "Seconds the host's CPUs spent idle waiting for IO, summed over CPUs (/proc/stat).",
        )
        iowait.add_metric([], iowait_s)
        yield iowait
        count = GaugeMetricFamily(f"{NAMESPACE}_host_cpus", "CPUs of the host as listed in /proc/stat.")
        count.add_metric([], cpus)
        yield count


class LiveMultiProcessCollector(Collector):
    """``MultiProcessCollector`` that first marks dead processes, and lists only processes that reported RSS."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._merged = MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        mark_dead_processes(self._path)
        for metric in self._merged.collect():  # type: ignore[no-untyped-call]
            if metric.name == _RSS_NAME:
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
