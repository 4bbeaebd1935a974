"""Figures of one process: RSS, disk IO and liveness (psutil), and the kernel's peak RSS (by hand).

psutil reads /proc for most of it. What psutil lacks is read here directly: ``VmHWM`` (the peak
RSS the kernel keeps for a process) and its reset through ``/proc/self/clear_refs``, which
``PeakRss`` needs to measure one job at a time in a long-lived process. Linux only, like the service.
"""

from __future__ import annotations

import re
from pathlib import Path

import psutil

Pid = int | None


def rss_bytes(pid: Pid = None) -> int:
    """Resident set size of a process (this one when ``pid`` is None)."""
    return int(psutil.Process(pid).memory_info().rss)


def io_bytes(pid: Pid = None) -> tuple[int, int]:
    """(read_bytes, write_bytes): storage traffic of a process, page-cache hits excluded."""
    counters = psutil.Process(pid).io_counters()
    return int(counters.read_bytes), int(counters.write_bytes)


def process_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an exited child its parent has not reaped)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def peak_rss_bytes() -> int:
    """VmHWM of this process: its peak RSS since start or since the last ``reset_peak_rss()``."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/self/clear_refs``, Linux 4.0+); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        # A kernel that accepts the write but ignores the value leaves the old peak in place.
        return _status_kib("VmHWM") <= _status_kib("VmRSS") + 4096
    except OSError:
        return False


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if match is None:
        raise OSError(f"no {field} in /proc/self/status")
    return int(match.group(1))
