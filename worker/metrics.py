"""Worker metrics (first version): task outcomes, queue wait, inference time, model load time.

Prefork children write to ``PROMETHEUS_MULTIPROC_DIR`` when it is set (the launcher creates and
wipes it); the main worker process serves the merged view on ``ANIMEGAN_METRICS_PORT``, and
``animegan serve`` lets the API's /metrics read the same directory.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

logger = logging.getLogger(__name__)

INFERENCE_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
OUTCOMES = ("succeeded", "failed", "timeout")

TASKS = Counter("tasks", "Tasks finished by outcome.", ["outcome"], namespace="animegan", subsystem="worker")
QUEUE_WAIT = Histogram(
    "queue_wait_seconds",
    "Seconds from job creation to its first start.",
    namespace="animegan",
    subsystem="worker",
    buckets=QUEUE_WAIT_BUCKETS,
)
INFERENCE = Histogram(
    "inference_duration_seconds",
    "Seconds spent in the generator per job.",
    namespace="animegan",
    buckets=INFERENCE_BUCKETS,
)
MODEL_LOAD = Gauge(
    "model_load_seconds", "Seconds the last model load took.", namespace="animegan", multiprocess_mode="max"
)
for _outcome in OUTCOMES:
    TASKS.labels(_outcome)


def observe_task(outcome: str, *, queue_s: float | None = None, inference_s: float | None = None) -> None:
    TASKS.labels(outcome).inc()
    if queue_s is not None:
        QUEUE_WAIT.observe(queue_s)
    if inference_s is not None:
        INFERENCE.observe(inference_s)


def observe_model_load(seconds: float) -> None:
    MODEL_LOAD.set(seconds)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def start_metrics_server(port: int) -> None:
    """Serve /metrics from the main worker process, merging the children's files if any."""
    registry = REGISTRY
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr="0.0.0.0", registry=registry)
    logger.info("worker metrics listening", extra={"port": port})


def mark_process_dead(pid: int) -> None:
    """Drop a dead child's live gauges from the shared directory."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
