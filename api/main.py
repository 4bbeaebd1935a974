"""The gateway application: ``create_app(settings=None) -> FastAPI``.

Run it with ``uvicorn --factory api.main:create_app`` (or ``animegan api``). The gateway never
imports torch or the inference runtime: it decodes and downscales with the torch-free
``imaging.decode``, stores the input in Redis (or, with ANIMEGAN_S3_BUCKET, in the object store:
``api.deps.open_object_store``) and sends the task by name.

The factory builds the parts routes use, one of each per app, on ``app.state`` (routes get them as
dependencies: ``api.deps``, ``api.jobs.deps``, ``api.events.streams``); includes the router of
every use case (``jobs``, ``videos``, ``batches``, ``events``, ``ops``, the page and docs of ``edge``); and
stacks the middleware of ``edge``, ``tenancy`` and ``ops``. The lifespan closes every connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import redis.asyncio
import redis.asyncio.retry
from fastapi import APIRouter, FastAPI
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from api import metrics
from api.batches.routes import router as batches_router
from api.config import ApiSettings, load_api_settings
from api.deps import connect_store, open_object_store
from api.edge.docs import install_docs
from api.edge.head import HeadMiddleware
from api.edge.page import router as page_router
from api.edge.security import SecurityHeadersMiddleware
from api.edge.upload import UploadLimitMiddleware
from api.events.batch_stream import router as batch_stream_router
from api.events.hub import EventHub
from api.events.job_stream import router as job_stream_router
from api.jobs.deps import build_job_parts
from api.jobs.routes import router as jobs_router
from api.log import RequestIdMiddleware, configure_logging
from api.ops.health import router as health_router
from api.ops.http_metrics import HttpMetricsMiddleware
from api.ops.metrics_server import serving_metrics
from api.ops.problem_pages import router as problem_pages_router
from api.ops.scrape import router as scrape_router
from api.problems import install_problem_handlers
from api.tenancy.auth import ClientMiddleware
from api.tenancy.clients import TrustedProxies
from api.tenancy.keys import KeyRing, KeysFileError
from api.tenancy.rate_limit import RateLimiter, RateLimitMiddleware
from api.videos.deps import build_video_parts
from api.videos.routes import router as videos_router
from jobstore.objectstore import StoreError

# Every router of the gateway, in the order of the API document; a new use case adds its router here.
ROUTERS: list[APIRouter] = [
    jobs_router,
    videos_router,
    batches_router,
    batch_stream_router,
    job_stream_router,
    health_router,
    scrape_router,
    page_router,
    problem_pages_router,
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
    await app.state.event_hub.aclose()
    await app.state.store.aclose()
    app.state.sender.close()


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


def _build_parts(app: FastAPI, settings: ApiSettings) -> None:
    """The parts routes use, one of each per app, on ``app.state``; the lifespan closes them."""
    store = app.state.store = connect_store(settings)
    objects = app.state.objects = open_object_store(settings)
    build_job_parts(app.state, settings, store, objects)
    build_video_parts(app.state, settings, store)
    # Event streams' pub/sub connection (opened on the first stream) and their caps.
    app.state.event_hub = EventHub(settings)


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
        docs_url=None,  # /docs and /redoc come from api/edge/docs.py, with assets shipped in the package
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.settings = settings
    _build_parts(app, settings)
    install_problem_handlers(app, unavailable=(RedisError,), store_unavailable=(StoreError,))
    for router in ROUTERS:
        # With a metrics port of its own, /metrics is not served on the public port at all.
        if router is not scrape_router or settings.api_metrics_port is None:
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
        # A batch's body may carry its every file at the full size (each file is also checked on its own);
        # a clip's its own limit, and the time a large body takes.
        path_limits={
            "/batches": settings.max_batch_files * settings.max_upload_bytes,
            "/videos": settings.max_video_bytes,
        },
        path_slugs={"/videos": "video-too-large"},
        path_timeouts={"/videos": settings.video_upload_timeout_s},
    )
    if limiter is not None:
        app.add_middleware(RateLimitMiddleware, limiter=limiter)
    # Outside the upload limiter and the rate limit: names the client both of them count.
    app.add_middleware(ClientMiddleware, keys=_key_ring(settings), proxies=TrustedProxies(settings.trusted_proxies))
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app
