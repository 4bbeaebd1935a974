"""This process's RSS and disk IO, mirrored into the shared metric families."""

from __future__ import annotations

import logging
import os
import threading

import psutil

from telemetry.families import DISK_READ, DISK_WRITE, RSS
from telemetry.process import io_bytes, rss_bytes

logger = logging.getLogger(__name__)


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

    def sample_or_warn(self) -> None:
        """``sample()``, logging instead of raising when the figures cannot be read."""
        try:
            self.sample()
        except (OSError, psutil.Error):
            logger.warning("could not read process statistics", exc_info=True)

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
            self.sample_or_warn()
