"""The dependencies every folder may declare: the settings and the job store's client (``Annotated`` aliases).

A route's signature says what it touches; a test swaps a part with
``app.dependency_overrides[get_x]``. Everything here is built once per app (``api.main``) and kept on
``app.state``. The parts of one use case are provided by its folder: ``api.jobs.deps`` (reader,
admission, submission), ``api.batches.reader``, ``api.events.streams``.
"""

from __future__ import annotations

import logging
from typing import Annotated

import redis.asyncio
import redis.asyncio.retry
import redis.exceptions
from fastapi import Depends, Request
from redis.backoff import ExponentialBackoff

from api.config import ApiSettings
from jobstore.objectstore import ObjectStore, StoreError, StoreRefused
from telemetry.families import init_store_labels, observe_store

logger = logging.getLogger(__name__)


def connect_store(settings: ApiSettings) -> redis.asyncio.Redis:
    """The job store's client of one app (a pool; connections open on first use)."""
    # A pooled connection that died with a Redis restart fails its next command: retry that on a
    # fresh connection instead of answering 503 to a client after Redis is back.
    return redis.asyncio.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=3,
        socket_timeout=10,
        health_check_interval=30,
        retry=redis.asyncio.retry.Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )


def open_object_store(settings: ApiSettings) -> ObjectStore | None:
    """The app's object store (None without ANIMEGAN_S3_BUCKET), probed once: a missing bucket or refused
    credentials stop the gateway with one line; a store that does not answer yet is only logged."""
    if not settings.object_store_enabled:
        return None
    init_store_labels()
    objects = ObjectStore(settings, observe=observe_store)
    try:
        objects.probe()
    except StoreRefused as exc:
        raise SystemExit(f"animegan api: object store: {exc}") from None
    except StoreError as exc:
        logger.warning("object store unreachable at start; submissions answer 503 until it is: %s", exc)
    return objects


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_store(request: Request) -> redis.asyncio.Redis:
    """The job store's client (one connection pool per app)."""
    store: redis.asyncio.Redis = request.app.state.store
    return store


def get_objects(request: Request) -> ObjectStore | None:
    """The object store holding inputs and results (None: they live in Redis)."""
    objects: ObjectStore | None = request.app.state.objects
    return objects


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ObjectsDep = Annotated[ObjectStore | None, Depends(get_objects)]
StoreDep = Annotated[redis.asyncio.Redis, Depends(get_store)]
