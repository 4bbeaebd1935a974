"""The gateway application: ``create_app(settings=None) -> FastAPI``.

Run it with ``uvicorn --factory api.main:create_app`` (or ``animegan api``). The gateway never
imports torch or the inference runtime: it decodes and downscales with the torch-free
``imaging.decode``, stores the input in Redis and sends the task by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import redis.asyncio
import redis.asyncio.retry
import redis.exceptions
from fastapi import APIRouter, FastAPI
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import RedisError

from api import metrics
from api.api_keys import KeyRing, KeysFileError
from api.auth import ClientMiddleware
from api.clients import TrustedProxies
from api.config import ApiSettings, load_api_settings
from api.docs import install_docs
from api.gateway import Gateway
from api.head import HeadMiddleware
from api.http_metrics import HttpMetricsMiddleware
from api.log import RequestIdMiddleware, configure_logging
from api.metrics_server import serving_metrics
from api.problems import install_problem_handlers
from api.rate_limit import RateLimiter, RateLimitMiddleware
from api.routes import batches, events, health, jobs, metrics as metrics_routes, page
from api.security import SecurityHeadersMiddleware
from api.task_sender import create_celery_client
from api.upload import UploadLimitMiddleware

# Every router of the gateway; a new page or endpoint module adds its router here.
ROUTERS: list[APIRouter] = [
    jobs.router,
    batches.router,
    events.router,
    health.router,
    metrics_routes.router,
    page.router,
]


def _version() -> str:
    try:
        return version("animegan")
    except PackageNotFoundError:
        return "0.0.0"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ApiSettings = app.state.settings
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(metrics.process_sampler())
        if settings.api_metrics_port is not None:
            await stack.enter_async_context(serving_metrics(app, settings.api_metrics_host, settings.api_metrics_port))
        yield
    limiter: RateLimiter | None = app.state.rate_limiter
    if limiter is not None:
        await limiter.aclose()
    gateway: Gateway = app.state.gateway
    await gateway.aclose()


def _key_ring(settings: ApiSettings) -> KeyRing | None:
    if settings.api_keys_file is None:
        return None
    try:
        return KeyRing(settings.api_keys_file)
    except KeysFileError as exc:
        raise SystemExit(f"animegan api: invalid configuration: ANIMEGAN_API_KEYS_FILE: {exc}") from None


def _rate_limiter(settings: ApiSettings) -> RateLimiter | None:
    rule = settings.rate_rule
    if rule is None:
        return None
    # A client of its own, quick to give up: a slow Redis must not slow every request (it fails open).
    client = redis.asyncio.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
    )
    return RateLimiter(client, rule)


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
        openapi_url="/openapi.json" if settings.docs else None,
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
        # With a metrics port of its own, /metrics is not served on the public port at all.
        if router is not metrics_routes.router or settings.api_metrics_port is None:
            app.include_router(router)
    if settings.docs:
        install_docs(app)
    limiter = app.state.rate_limiter = _rate_limiter(settings)
    # Added last = outermost: the request id exists before anything else runs or fails.
    app.add_middleware(HeadMiddleware)
    app.add_middleware(
        UploadLimitMiddleware,
        image_limit=settings.max_upload_bytes,
        max_concurrent=settings.max_concurrent_uploads,
        timeout_s=settings.upload_timeout_s,
        # A batch's body may carry its every file at the full size (each file is also checked on its own).
        path_limits={"/batches": settings.max_batch_files * settings.max_upload_bytes},
    )
    if limiter is not None:
        app.add_middleware(RateLimitMiddleware, limiter=limiter)
    # Outside the upload limiter and the rate limit: names the client both of them count.
    app.add_middleware(ClientMiddleware, keys=_key_ring(settings), proxies=TrustedProxies(settings.trusted_proxies))
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app
