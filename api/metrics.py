"""Gateway metrics (first version) and the /metrics exposition.

With ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn workers, or ``animegan serve``, whose
workers write to the same directory) every scrape merges all processes' files through a fresh
``MultiProcessCollector``; otherwise the default registry is served.
"""

from __future__ import annotations

import contextlib
import os
import time

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker import contract

REJECT_REASONS = ("queue_full", "too_large", "unsupported", "invalid", "broker_unavailable")
UPLOAD_BUCKETS = (16e3, 64e3, 256e3, 512e3, 1e6, 2e6, 4e6, 8e6)

HTTP_REQUESTS = Counter(
    "http_requests", "HTTP requests by route template and status.", ["method", "route", "status"], namespace="animegan"
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "Seconds to answer an HTTP request.", ["method", "route"], namespace="animegan"
)
JOBS_SUBMITTED = Counter("jobs_submitted", "Jobs accepted and queued.", namespace="animegan")
JOBS_REJECTED = Counter("jobs_rejected", "Uploads refused, by reason.", ["reason"], namespace="animegan")
DEDUP_HITS = Counter("dedup_hits", "Requests answered by an identical earlier job.", namespace="animegan")
UPLOAD_BYTES = Histogram(
    "upload_bytes", "Size of accepted image uploads.", namespace="animegan", buckets=UPLOAD_BUCKETS
)
QUEUE_DEPTH = Gauge("queue_depth", "Jobs waiting for a worker.", namespace="animegan", multiprocess_mode="livemax")
for _reason in REJECT_REASONS:
    JOBS_REJECTED.labels(_reason)

router = APIRouter()


def observe_submitted(upload_bytes: int, *, deduplicated: bool) -> None:
    UPLOAD_BYTES.observe(upload_bytes)
    if deduplicated:
        DEDUP_HITS.inc()
    else:
        JOBS_SUBMITTED.inc()


def observe_rejected(reason: str) -> None:
    JOBS_REJECTED.labels(reason).inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition of this process, or of all processes sharing the multiprocess directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


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
    """Prometheus text exposition, with the queue depth sampled from Redis at scrape time."""
    # The last sampled depth stays when Redis is down: a scrape must not fail because of it.
    with contextlib.suppress(RedisError):
        QUEUE_DEPTH.set(int(await request.app.state.job_queue.redis.zcard(contract.QUEUED_KEY)))
    body, content_type = exposition()
    return Response(content=body, media_type=content_type)
