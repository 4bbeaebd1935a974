"""The dependencies every folder may declare: the settings and the job store's client (``Annotated`` aliases).

A route's signature says what it touches; a test swaps a part with
``app.dependency_overrides[get_x]``. Everything here is built once per app (``api.main``) and kept on
``app.state``. The parts of one use case are provided by its folder: ``api.jobs.deps`` (reader,
admission, submission), ``api.batches.reader``, ``api.events.streams``.
"""

from __future__ import annotations

from typing import Annotated

import redis.asyncio
import redis.asyncio.retry
import redis.exceptions
from fastapi import Depends, Request
from redis.backoff import ExponentialBackoff

from api.config import ApiSettings
from jobstore.objectstore import ObjectStore
from telemetry.families import observe_store


def open_objects(settings: ApiSettings) -> ObjectStore | None:
    """The bucket of ANIMEGAN_S3_BUCKET (clips, pieces and results of videos live there), None without one."""
    return ObjectStore(settings, observe=observe_store) if settings.object_store_enabled else None


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


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_store(request: Request) -> redis.asyncio.Redis:
    """The job store's client (one connection pool per app)."""
    store: redis.asyncio.Redis = request.app.state.store
    return store


def get_objects(request: Request) -> ObjectStore | None:
    """The object store, when ANIMEGAN_S3_BUCKET names one (else None: bytes live in Redis)."""
    objects: ObjectStore | None = request.app.state.objects
    return objects


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[redis.asyncio.Redis, Depends(get_store)]
ObjectsDep = Annotated[ObjectStore | None, Depends(get_objects)]
