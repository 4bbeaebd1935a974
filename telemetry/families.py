"""Metric families every animegan process writes about itself (gateway and workers alike).

* ``animegan_process_resident_memory_bytes{component, pid}``: each process writes its own RSS,
  so a scrape of any process in the multiprocess directory shows every live one. The standard
  process collector cannot do that: in multiprocess mode it would report the scraping process only.
* ``animegan_process_disk_{read,write}_bytes_total{component}``: a process's storage traffic
  (bytes that really went to or came from storage, not the page cache), mirrored as counters;
  summed over processes, kept after a process exits.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

NAMESPACE = "animegan"

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
RSS_NAME = f"{NAMESPACE}_process_resident_memory_bytes"
