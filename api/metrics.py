"""Gateway metrics and the /metrics exposition.

The gateway counts what it sees (HTTP requests, accepted uploads and their size, rejections by
reason, deduplicated requests) and, at scrape time, reads what Redis knows: the length of the
Celery queue, the live worker processes (heartbeats), Redis' used memory. Its own RSS and disk IO
are refreshed at every scrape and every ``SAMPLE_INTERVAL_S`` (``worker.procstats``).

With ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn processes, or ``animegan serve``, whose
worker processes write to the same directory) every scrape merges all processes' files through a
fresh collector; otherwise this process's default registry is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import redis.asyncio
from fastapi import APIRouter, Request, Response
from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.config import ApiSettings
from worker import contract, procstats

logger = logging.getLogger(__name__)

# Problem slugs that refuse an upload, and the bounded reason label each is counted under.
REJECTION_REASONS = {
    "image-too-large": "too_large",
    "unsupported-media-type": "unsupported",
    "invalid-image": "invalid",
    "too-many-pixels": "too_many_pixels",
    "malformed-request": "malformed",
    "validation-error": "malformed",
    "request-timeout": "timeout",
    "too-many-uploads": "too_many_uploads",
    "queue-full": "queue_full",
    "broker-unavailable": "broker_unavailable",
}
UPLOAD_BUCKETS = (16e3, 64e3, 256e3, 512e3, 1e6, 2e6, 4e6, 8e6, 16e6, 32e6)
# Kombu's Redis transport keeps one list per priority step: the queue name, then name + sep + step.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
SAMPLE_INTERVAL_S = 5.0
SCRAPE_REDIS_TIMEOUT_S = 2.0

HTTP_REQUESTS = Counter(
    "http_requests", "HTTP requests by route template and status.", ["method", "route", "status"], namespace="animegan"
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "Seconds to answer an HTTP request.", ["method", "route"], namespace="animegan"
)
JOBS_SUBMITTED = Counter("jobs_submitted", "Jobs accepted and queued.", namespace="animegan")
REJECTIONS = Counter("rejections", "Uploads refused, by reason.", ["reason"], namespace="animegan")
DEDUP_HITS = Counter(
    "dedup_hits", "Uploads answered by an identical earlier job instead of a new one.", namespace="animegan"
)
UPLOAD_BYTES = Histogram(
    "upload_bytes", "Size of accepted image uploads in bytes.", namespace="animegan", buckets=UPLOAD_BUCKETS
)
for _reason in sorted(set(REJECTION_REASONS.values())):
    REJECTIONS.labels(_reason)

router = APIRouter()
_process_stats = procstats.ProcessStats("api")


def observe_submitted(upload_bytes: int, *, deduplicated: bool) -> None:
    UPLOAD_BYTES.observe(upload_bytes)
    if deduplicated:
        DEDUP_HITS.inc()
    else:
        JOBS_SUBMITTED.inc()


def observe_rejection(slug: str) -> None:
    """Count a refused upload under its reason; problems that refuse no upload are ignored."""
    reason = REJECTION_REASONS.get(slug)
    if reason is not None:
        REJECTIONS.labels(reason).inc()


@contextlib.asynccontextmanager
async def process_sampler(interval_s: float = SAMPLE_INTERVAL_S) -> AsyncIterator[None]:
    """Keep this process's RSS and disk IO fresh while the app runs (between scrapes too)."""

    async def sample_forever() -> None:
        while True:
            try:
                _process_stats.sample()
            except OSError:
                logger.warning("could not read process statistics", exc_info=True)
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(sample_forever())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True)
class StoreFigures:
    """What Redis says at scrape time."""

    queue_depth: int
    used_memory: int
    max_memory: int
    worker_processes: int


def celery_queue_keys(queue: str = contract.QUEUE_NAME) -> list[str]:
    return [queue, *(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)]


async def read_store_figures(store: redis.asyncio.Redis, broker: redis.asyncio.Redis) -> StoreFigures:
    async with broker.pipeline(transaction=False) as pipe:
        for key in celery_queue_keys():
            pipe.llen(key)
        depth = sum(int(n) for n in await pipe.execute())
    memory = await store.info("memory")
    workers = contract.live_heartbeats(await store.hgetall(contract.WORKERS_KEY))
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
            "animegan_queue_depth", "Messages waiting in the Celery queue (Redis list length).", labels=["queue"]
        )
        depth.add_metric([contract.QUEUE_NAME], self.figures.queue_depth)
        yield depth
        yield _gauge("redis_used_memory_bytes", "Redis used_memory (INFO memory).", self.figures.used_memory)
        yield _gauge("redis_max_memory_bytes", "Redis maxmemory (0: no limit).", self.figures.max_memory)
        yield _gauge(
            "worker_processes", "Worker processes with a live heartbeat in Redis.", self.figures.worker_processes
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"animegan_{name}", documentation, value=value)


def _broker_client(request: Request) -> redis.asyncio.Redis:
    """The job-store client, or (when ANIMEGAN_BROKER_URL names another Redis) a client of the broker."""
    settings: ApiSettings = request.app.state.settings
    store: redis.asyncio.Redis = request.app.state.job_queue.redis
    if settings.broker == settings.redis_url:
        return store
    client: redis.asyncio.Redis | None = getattr(request.app.state, "metrics_broker", None)
    if client is None:
        client = redis.asyncio.Redis.from_url(settings.broker, socket_connect_timeout=2, socket_timeout=2)
        request.app.state.metrics_broker = client
    return client


class HttpMetricsMiddleware:
    """Counts and times requests by route template (never the raw path: job ids stay out of labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "other")
            method = scope["method"]
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_DURATION.labels(method, template).observe(time.perf_counter() - start)


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def read_metrics(request: Request) -> Response:
    """Prometheus text exposition: every process of this gateway (and, embedded, of the workers) plus Redis."""
    store: redis.asyncio.Redis = request.app.state.job_queue.redis
    figures: StoreFigures | None = None
    # A scrape must not fail because Redis is down: the Redis-derived families are left out then.
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        async with asyncio.timeout(SCRAPE_REDIS_TIMEOUT_S):
            figures = await read_store_figures(store, _broker_client(request))
    try:
        _process_stats.sample()
    except OSError:
        logger.warning("could not read process statistics", exc_info=True)
    body, content_type = procstats.exposition(StoreCollector(figures, request.app.state.settings))
    return Response(content=body, media_type=content_type)
