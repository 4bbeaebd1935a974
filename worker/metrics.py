"""Worker metrics: job outcomes, queue wait, inference and end-to-end time, per-job peak RSS, process stats,
video jobs, their segments and frames.

Every process of a worker writes to ``PROMETHEUS_MULTIPROC_DIR`` (the launcher creates it and
removes what earlier runs left). The main process serves the merged view on
``ANIMEGAN_METRICS_PORT``; under ``animegan serve`` the gateway's /metrics reads the same
directory instead. Pool children refresh their RSS and disk counters from a thread every
``CHILD_SAMPLE_INTERVAL_S``; the main process does it from Celery's timer, on the thread that
forks the children (a metrics lock held by another thread during a fork would be inherited
locked by the child). A child that exits cleanly marks itself dead; one that was killed is
marked by the next scrape (``telemetry.exposition.mark_dead_processes``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import bootsteps
from prometheus_client import Counter, Gauge, Histogram, multiprocess, start_http_server

from telemetry.exposition import multiprocess_dir, remove_stale_files, scrape_registry
from telemetry.peak_rss import PeakRss
from telemetry.process_stats import ProcessStats

logger = logging.getLogger(__name__)

# Seconds-long CPU work: 0.1 s (a tiny image, a cache hit) to 5 min (the default soft time limit).
SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
MiB = 1024 * 1024
PEAK_RSS_BUCKETS = tuple(float(m * MiB) for m in (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096))
OUTCOMES = ("succeeded", "failed", "timeout")
CHILD_SAMPLE_INTERVAL_S = 1.0
MAIN_SAMPLE_INTERVAL_S = 5.0

JOBS = Counter("jobs", "Jobs that ended, by style and outcome.", ["style", "outcome"], namespace="animegan")
JOBS_RUNNING = Gauge(
    "jobs_running", "Jobs a worker process is running now.", namespace="animegan", multiprocess_mode="livesum"
)
QUEUE_WAIT = Histogram(
    "queue_wait_seconds",
    "Seconds from a job's creation to the start of its first run.",
    namespace="animegan",
    buckets=SECONDS_BUCKETS,
)
INFERENCE = Histogram(
    "inference_seconds",
    "Seconds the generator took per succeeded job.",
    ["style"],
    namespace="animegan",
    buckets=SECONDS_BUCKETS,
)
JOB_DURATION = Histogram(
    "job_duration_seconds",
    "Seconds from a job's creation to its result being stored (succeeded jobs, end to end).",
    ["style"],
    namespace="animegan",
    buckets=SECONDS_BUCKETS,
)
JOB_PEAK_RSS = Histogram(
    "job_peak_rss_bytes",
    "Peak resident set size of the worker process during one job.",
    namespace="animegan",
    buckets=PEAK_RSS_BUCKETS,
)
HANDBACKS = Counter(
    "jobs_handed_back",
    "Running jobs whose worker process vanished, by what became of them (requeued, exhausted).",
    ["outcome"],
    namespace="animegan",
)
MODEL_LOAD = Gauge(
    "model_load_seconds", "Seconds the last model load took.", namespace="animegan", multiprocess_mode="max"
)
MEMORY_LIMIT = Gauge(
    "worker_max_memory_per_child_bytes",
    "ANIMEGAN_MAX_MEMORY_PER_CHILD_MB in bytes: a pool child above it is replaced after its job (0: no limit).",
    namespace="animegan",
    multiprocess_mode="livemax",
)

ENGINE = Gauge(
    "worker_engine_info",
    "1 for the precision (fp32, bf16, int8) and runtime (onednn: the native kernels; onnxruntime or openvino: "
    "the graph fallback) the worker processes' engines computed in.",
    ["precision", "runtime"],
    namespace="animegan",
    multiprocess_mode="livemax",
)

WEBHOOK_EVENTS = ("job.succeeded", "job.failed", "batch.completed")
WEBHOOK_OUTCOMES = ("delivered", "retried", "given_up", "refused")
WEBHOOK_DELIVERIES = Counter(
    "webhook_deliveries",
    "Webhook delivery attempts by event and outcome: delivered (2xx), retried (failed, tried again later), "
    "given_up (failed on the last try), refused (the host resolved to a forbidden address).",
    ["event", "outcome"],
    namespace="animegan",
)

VIDEO_OUTCOMES = ("succeeded", "failed")
SEGMENT_OUTCOMES = ("succeeded", "failed", "cancelled")
VIDEO_JOBS = Counter(
    "video_jobs", "Video jobs that ended, by style and outcome.", ["style", "outcome"], namespace="animegan"
)
VIDEO_SEGMENTS = Counter(
    "video_segments",
    "Segment runs of video jobs that ended, by outcome (cancelled: the video ended while it ran).",
    ["outcome"],
    namespace="animegan",
)
VIDEO_FRAMES = Counter(
    "video_frames", "Frames of video segments stylized and encoded (rate(): frames per second).", namespace="animegan"
)
VIDEO_SEGMENT_FPS = Histogram(
    "video_segment_frames_per_second",
    "Frames per second of one segment run (decode, engine, encode), per worker process.",
    namespace="animegan",
    buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)

_process_stats: ProcessStats | None = None


def init_labels(styles: list[str]) -> None:
    """Create every style x outcome series at 0, so rates and ratios exist before the first job."""
    for style in styles:
        INFERENCE.labels(style)
        JOB_DURATION.labels(style)
        for outcome in OUTCOMES:
            JOBS.labels(style, outcome)
    for outcome in ("requeued", "exhausted"):
        HANDBACKS.labels(outcome)
    for style in styles:
        for outcome in VIDEO_OUTCOMES:
            VIDEO_JOBS.labels(style, outcome)
    for outcome in SEGMENT_OUTCOMES:
        VIDEO_SEGMENTS.labels(outcome)


def init_main_process(styles: list[str], max_memory_per_child_mb: int) -> None:
    """Main worker process, before the pool starts: drop earlier runs' files, publish the memory ceiling."""
    path = multiprocess_dir()
    if path:
        removed = remove_stale_files(path)
        if removed:
            logger.info("removed metrics files of exited processes", extra={"files": len(removed)})
    init_labels(styles)
    MEMORY_LIMIT.set(max_memory_per_child_mb * MiB)


def start_process_stats(component: str, interval_s: float | None = None) -> ProcessStats:
    """Sample this process's RSS and disk IO now, and from a thread if ``interval_s`` is given."""
    global _process_stats
    _process_stats = ProcessStats(component)
    if interval_s is None:
        _process_stats.sample()
    else:
        _process_stats.start(interval_s)
    return _process_stats


def observe_handback(outcome: str) -> None:
    """A running job whose process vanished: requeued, or failed out of attempts (exhausted)."""
    HANDBACKS.labels(outcome).inc()


def init_webhook_labels() -> None:
    for event in WEBHOOK_EVENTS:
        for outcome in WEBHOOK_OUTCOMES:
            WEBHOOK_DELIVERIES.labels(event, outcome)


def observe_webhook(event: str, outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(event, outcome).inc()


def observe_queue_wait(seconds: float) -> None:
    QUEUE_WAIT.observe(seconds)


def observe_task(style: str, outcome: str, *, inference_s: float | None = None, total_s: float | None = None) -> None:
    JOBS.labels(style, outcome).inc()
    if inference_s is not None:
        INFERENCE.labels(style).observe(inference_s)
    if total_s is not None:
        JOB_DURATION.labels(style).observe(total_s)


def observe_video(style: str, outcome: str) -> None:
    """A video job ended (its join succeeded, or a part failed it)."""
    VIDEO_JOBS.labels(style, outcome).inc()


def observe_segment(outcome: str, *, frames: int = 0, seconds: float = 0.0) -> None:
    """A segment run ended; a succeeded one counts its frames and its rate."""
    VIDEO_SEGMENTS.labels(outcome).inc()
    if frames and seconds > 0:
        VIDEO_FRAMES.inc(frames)
        VIDEO_SEGMENT_FPS.observe(frames / seconds)


@contextmanager
def running_job() -> Iterator[None]:
    """Count the job as running and record the process's peak RSS over it."""
    peak = PeakRss()
    JOBS_RUNNING.inc()
    peak.start()
    try:
        yield
    finally:
        JOB_PEAK_RSS.observe(peak.stop())
        JOBS_RUNNING.dec()
        if _process_stats is not None:
            _process_stats.sample()


def set_engine(precision: str, runtime: str) -> None:
    """Info-style: which precision and runtime this process's engine loaded."""
    ENGINE.labels(precision=precision, runtime=runtime).set(1)


def observe_model_load(seconds: float) -> None:
    MODEL_LOAD.set(seconds)


def start_metrics_server(port: int) -> None:
    """Serve /metrics from the main worker process: every process of this worker, plus host figures."""
    start_http_server(port, addr="0.0.0.0", registry=scrape_registry())
    logger.info("worker metrics listening", extra={"port": port})


def mark_process_dead(pid: int) -> None:
    """Drop a child's live gauges (RSS, jobs running) from the shared directory as it exits."""
    path = multiprocess_dir()
    if path:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class ProcessStatsStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Refreshes the main process's RSS and disk IO from Celery's timer (the main thread under prefork)."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._timer_entry: Any = None

    def start(self, worker: Any) -> None:
        from celery.concurrency.prefork import TaskPool as PreforkPool

        pool_cls = worker.pool_cls
        prefork = isinstance(pool_cls, type) and issubclass(pool_cls, PreforkPool)
        # Solo and threaded pools run the jobs in this process: it is the worker, not a supervisor.
        stats = start_process_stats("worker_main" if prefork else "worker")
        self._timer_entry = worker.timer.call_repeatedly(MAIN_SAMPLE_INTERVAL_S, self._sample, (stats,))

    def stop(self, worker: Any) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()

    @staticmethod
    def _sample(stats: ProcessStats) -> None:
        stats.sample_or_warn()
