"""Metric families every animegan process writes about itself (gateway and workers alike).

* ``animegan_process_resident_memory_bytes{component, pid}``: each process writes its own RSS,
  so a scrape of any process in the multiprocess directory shows every live one. The standard
  process collector cannot do that: in multiprocess mode it would report the scraping process only.
* ``animegan_process_disk_{read,write}_bytes_total{component}``: a process's storage traffic
  (bytes that really went to or came from storage, not the page cache), mirrored as counters;
  summed over processes, kept after a process exits.
* ``animegan_store_operations_total{op, outcome}`` and ``animegan_store_operation_seconds{op}``:
  calls to the object store (ANIMEGAN_S3_BUCKET) by the gateway, the pool children and the blob
  reaper: op put, get, delete, sign or probe; outcome ok, not_found or error
  (``jobstore.objectstore`` times them; ``observe_store`` is the observer it is given).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

STORE_OPS = ("put", "get", "delete", "sign", "probe")
STORE_OUTCOMES = ("ok", "not_found", "error")
STORE_OPERATIONS = Counter(
    "store_operations",
    "Object store calls by operation (put, get, delete, sign, probe) and outcome (ok, not_found, error).",
    ["op", "outcome"],
    namespace=NAMESPACE,
)
STORE_SECONDS = Histogram(
    "store_operation_seconds",
    "Seconds an object store call took (a download: until its first bytes), by operation.",
    ["op"],
    namespace=NAMESPACE,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def init_store_labels() -> None:
    """Every op x outcome series at 0, so rates exist before the first call."""
    for op in STORE_OPS:
        STORE_SECONDS.labels(op)
        for outcome in STORE_OUTCOMES:
            STORE_OPERATIONS.labels(op, outcome)


def observe_store(op: str, outcome: str, seconds: float) -> None:
    """The observer given to ``jobstore.objectstore.ObjectStore``."""
    STORE_OPERATIONS.labels(op, outcome).inc()
    if outcome != "error" or seconds > 0:
        STORE_SECONDS.labels(op).observe(seconds)
