"""Host-wide CPU figures (psutil), exported at scrape time by a custom collector.

``animegan_host_cpu_iowait_seconds_total`` and ``animegan_host_cpus``: no per-process files needed.
"""

from __future__ import annotations

from collections.abc import Iterator

import psutil
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from telemetry.families import NAMESPACE


def host_cpu_times() -> tuple[float, int]:
    """(iowait seconds summed over CPUs, number of online CPUs)."""
    return float(getattr(psutil.cpu_times(), "iowait", 0.0)), psutil.cpu_count() or 0


class HostCollector(Collector):
    """Host CPU iowait as a counter, read at each scrape."""

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
