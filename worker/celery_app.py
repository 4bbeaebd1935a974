"""The Celery application of the workers and its process lifecycle hooks.

``celery -A worker.celery_app worker`` uses the module-level ``app``. The configuration follows
the research notes: JSON only, acks late and requeue on a lost worker (at-least-once, made safe by
the task's write-once result and attempt counter), prefetch 1 for long CPU tasks, time limits well
below the broker's visibility timeout so a running task is never handed to a second worker, and no
result backend (results live under our own keys, with TTLs).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from celery.utils.log import current_process_index

from jobstore.keys import QUEUE_NAME
from worker import metrics, reaper_process, runtime, webhook_process
from worker.config import WorkerSettings, load_worker_settings
from worker.log import configure_logging
from worker.runtime import SweeperStep

logger = logging.getLogger(__name__)


def create_celery(settings: WorkerSettings | None = None) -> Celery:
    settings = settings or load_worker_settings()
    app = Celery("animegan", broker=settings.broker, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s, "socket_connect_timeout": 5},
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE_NAME,
        worker_concurrency=settings.concurrency,
        worker_max_memory_per_child=settings.max_memory_per_child_mb * 1024 or None,
        worker_max_tasks_per_child=settings.max_tasks_per_child or None,
        worker_hijack_root_logger=False,
        # Children load the generator before they report alive; the default 4 s is too short.
        worker_proc_alive_timeout=120,
        worker_send_task_events=False,
    )
    app.conf.animegan_settings = settings
    app.steps["worker"].add(metrics.ProcessStatsStep)
    app.steps["worker"].add(SweeperStep)
    return app


def _settings(sender_app: Celery | None = None) -> WorkerSettings:
    found: WorkerSettings = (sender_app or app).conf.animegan_settings
    return found


def _setup_logging(**_: Any) -> None:
    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)


def _on_worker_init(sender: Any, **_: Any) -> None:
    """Main process, before the pool starts: remember the pool size, check the weights and the bucket,
    serve metrics, start the webhook sender."""
    settings = _settings(sender.app)
    runtime.init_runtime(settings, concurrency=int(sender.concurrency or settings.concurrency))
    check_weights(settings)
    check_precision(settings)
    reaper_process.start_reaper(settings)
    metrics.init_main_process(settings.styles, settings.max_memory_per_child_mb)
    if settings.metrics_port:
        metrics.start_metrics_server(settings.metrics_port)
    webhook_process.start_sender(settings)


def check_weights(settings: WorkerSettings) -> None:
    """Stop the worker with one clear line when a configured style has no usable weights file."""
    from inference.errors import WeightsError
    from inference.weights import resolve_weights

    for style in settings.styles:
        try:
            resolve_weights(style, weights_dir=settings.weights_dir, cache_dir=settings.cache_dir)
        except WeightsError as exc:
            raise SystemExit(f"animegan worker: {exc}") from None


def check_precision(settings: WorkerSettings) -> None:
    """Stop the worker with one clear line when the precision cannot run natively on this CPU."""
    from inference.errors import PrecisionError
    from inference.precision import resolve_precision

    try:
        resolve_precision(settings.precision)
    except PrecisionError as exc:
        raise SystemExit(f"animegan worker: {exc}") from None


def _on_child_start(**_: Any) -> None:
    """Prefork child: pin to a core, load every style once, then announce readiness."""
    rt = runtime.get_runtime()
    metrics.start_process_stats("worker", metrics.CHILD_SAMPLE_INTERVAL_S)
    rt.pin_cpu(current_process_index(base=0) or 0)
    rt.load_models()
    rt.start_heartbeat()


def _on_child_exit(pid: int, **_: Any) -> None:
    runtime.get_runtime().stop_heartbeat()
    metrics.mark_process_dead(pid)


def _on_worker_ready(sender: Any, **_: Any) -> None:
    """Threaded and solo pools run tasks in this process: load here (prefork children did already)."""
    from celery.concurrency.prefork import TaskPool as PreforkPool

    pool_cls = sender.controller.pool_cls
    if isinstance(pool_cls, type) and issubclass(pool_cls, PreforkPool):
        return
    rt = runtime.get_runtime()
    rt.load_models()
    rt.start_heartbeat()


def _on_worker_shutdown(**_: Any) -> None:
    runtime.get_runtime().stop_heartbeat()
    webhook_process.stop_sender(_settings().webhook_lease_s)
    reaper_process.stop_reaper()


signals.setup_logging.connect(_setup_logging)
signals.worker_init.connect(_on_worker_init)
signals.worker_process_init.connect(_on_child_start)
signals.worker_process_shutdown.connect(_on_child_exit)
signals.worker_ready.connect(_on_worker_ready)
signals.worker_shutdown.connect(_on_worker_shutdown)

app = create_celery()
