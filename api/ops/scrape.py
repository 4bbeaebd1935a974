"""GET /metrics: the Prometheus text exposition of the gateway, plus what Redis says at scrape time.

With ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn processes, or ``animegan serve``, whose
worker processes write to the same directory) every scrape merges all processes' files through a
fresh collector; otherwise this process's default registry is served.

What Redis says (the queue depth, live workers, Redis memory) is read per scrape and exported as
gauges of its own collector. The queue depth is the job store's ``waiting`` list: the one
definition admission, /readyz, this gauge and the chart's KEDA trigger share (Celery's own list
holds tokens, not jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import redis.asyncio
from fastapi import APIRouter, Response
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from api import metrics
from api.config import ApiSettings
from api.deps import SettingsDep, StoreDep
from jobstore.heartbeats import live_heartbeats
from jobstore.keys import QUEUE_NAME, WAITING_KEY, WORKERS_KEY
from telemetry.exposition import exposition

SCRAPE_REDIS_TIMEOUT_S = 2.0

router = APIRouter()


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def read_metrics(store: StoreDep, settings: SettingsDep) -> Response:
    """Prometheus text exposition: every process of this gateway (and, embedded, of the workers) plus Redis."""
    figures: StoreFigures | None = None
    # A scrape must not fail because Redis is down: the Redis-derived families are left out then.
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        async with asyncio.timeout(SCRAPE_REDIS_TIMEOUT_S):
            figures = await read_store_figures(store)
    metrics.sample_process()
    body, content_type = exposition(StoreCollector(figures, settings))
    return Response(content=body, media_type=content_type)


@dataclass(frozen=True)
class StoreFigures:
    """What Redis says at scrape time."""

    queue_depth: int
    used_memory: int
    max_memory: int
    worker_processes: int


async def read_store_figures(store: redis.asyncio.Redis) -> StoreFigures:
    depth = int(await store.llen(WAITING_KEY))
    memory = await store.info("memory")
    workers = live_heartbeats(await store.hgetall(WORKERS_KEY))
    return StoreFigures(
        queue_depth=depth,
        used_memory=int(memory["used_memory"]),
        max_memory=int(memory.get("maxmemory", 0)),
        worker_processes=len(workers),
    )


class StoreCollector(Collector):
    """The figures read from Redis for one scrape (none when Redis did not answer)."""

    def __init__(self, figures: StoreFigures | None, settings: ApiSettings) -> None:
        self.figures = figures
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        yield _gauge("redis_up", "1 when Redis answered this scrape's queries, else 0.", int(self.figures is not None))
        limit_help = "ANIMEGAN_MAX_QUEUE_DEPTH: waiting jobs at which uploads get 503."
        yield _gauge("queue_depth_limit", limit_help, self.settings.max_queue_depth)
        if self.figures is None:
            return
        depth = GaugeMetricFamily(
            "animegan_queue_depth", "Jobs waiting for a worker (the job store's waiting list).", labels=["queue"]
        )
        depth.add_metric([QUEUE_NAME], self.figures.queue_depth)
        yield depth
        yield _gauge("redis_used_memory_bytes", "Redis used_memory (INFO memory).", self.figures.used_memory)
        yield _gauge("redis_max_memory_bytes", "Redis maxmemory (0: no limit).", self.figures.max_memory)
        yield _gauge(
            "worker_processes", "Worker processes with a live heartbeat in Redis.", self.figures.worker_processes
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"animegan_{name}", documentation, value=value)
