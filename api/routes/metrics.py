"""GET /metrics: the Prometheus text exposition of the gateway, plus what Redis says at scrape time.

With ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn processes, or ``animegan serve``, whose
worker processes write to the same directory) every scrape merges all processes' files through a
fresh collector; otherwise this process's default registry is served.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Response
from redis.exceptions import RedisError

from api import metrics
from api.deps import GatewayDep
from api.store_figures import StoreCollector, StoreFigures, read_store_figures
from telemetry.exposition import exposition

SCRAPE_REDIS_TIMEOUT_S = 2.0

router = APIRouter()


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def read_metrics(gateway: GatewayDep) -> Response:
    """Prometheus text exposition: every process of this gateway (and, embedded, of the workers) plus Redis."""
    figures: StoreFigures | None = None
    # A scrape must not fail because Redis is down: the Redis-derived families are left out then.
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        async with asyncio.timeout(SCRAPE_REDIS_TIMEOUT_S):
            figures = await read_store_figures(gateway.redis)
    metrics.sample_process()
    body, content_type = exposition(StoreCollector(figures, gateway.settings))
    return Response(content=body, media_type=content_type)
