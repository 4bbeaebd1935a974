"""The peak RSS of this process over one job."""

from __future__ import annotations

import threading

from telemetry.process import peak_rss_bytes, reset_peak_rss, rss_bytes

# Interval of the fallback peak sampler when the kernel's peak counter cannot be reset.
PEAK_SAMPLE_INTERVAL_S = 0.025


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
