"""The gateway application: ``create_app(settings=None) -> FastAPI``.

Run it with ``uvicorn --factory api.main:create_app`` (or ``animegan api``). The gateway never
imports torch or the inference runtime: it decodes and downscales with the torch-free
``inference.imageio``, stores the input in Redis and sends the task by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import redis.asyncio
import redis.asyncio.retry
import redis.exceptions
from fastapi import APIRouter, FastAPI
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from api import metrics
from api.config import ApiSettings, load_api_settings
from api.docs import install_docs
from api.gateway import Gateway
from api.http_metrics import HttpMetricsMiddleware
from api.log import RequestIdMiddleware, configure_logging
from api.problems import install_problem_handlers
from api.routes import events, health, jobs, metrics as metrics_routes, page
from api.security import SecurityHeadersMiddleware
from api.task_sender import create_celery_client
from api.upload import UploadLimitMiddleware

# Every router of the gateway; a new page or endpoint module adds its router here.
ROUTERS: list[APIRouter] = [jobs.router, events.router, health.router, metrics_routes.router, page.router]


def _version() -> str:
    try:
        return version("animegan")
    except PackageNotFoundError:
        return "0.0.0"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with metrics.process_sampler():
        yield
    gateway: Gateway = app.state.gateway
    await gateway.aclose()


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the gateway; without ``settings`` they are read from ANIMEGAN_* and logging is set up."""
    if settings is None:
        settings = load_api_settings()
        configure_logging(settings.log_format, settings.log_level)
    app = FastAPI(
        title="AnimeGAN",
        version=_version(),
        summary="Turn photos into anime-style images (AnimeGANv2 on CPU).",
        lifespan=_lifespan,
        docs_url=None,  # /docs and /redoc come from api/docs.py, with assets shipped in the package
        redoc_url=None,
    )
    app.state.settings = settings
    # A pooled connection that died with a Redis restart fails its next command: retry that on a
    # fresh connection instead of answering 503 to a client after Redis is back.
    client = redis.asyncio.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=3,
        socket_timeout=10,
        health_check_interval=30,
        retry=redis.asyncio.retry.Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )
    app.state.gateway = Gateway(settings, client, create_celery_client(settings))
    install_problem_handlers(app, unavailable=(RedisError,))
    for router in ROUTERS:
        app.include_router(router)
    install_docs(app)
    # Added last = outermost: the request id exists before anything else runs or fails.
    app.add_middleware(
        UploadLimitMiddleware,
        image_limit=settings.max_upload_bytes,
        max_concurrent=settings.max_concurrent_uploads,
        timeout_s=settings.upload_timeout_s,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app
