"""The dependencies every folder may declare: the settings and the job store's client (``Annotated`` aliases).

A route's signature says what it touches; a test swaps a part with
``app.dependency_overrides[get_x]``. Everything here is built once per app by ``api.main`` and kept
on ``app.state``. The parts of one use case are provided by its folder: ``api.jobs.deps`` (reader,
admission, submission), ``api.batches.reader``, ``api.events.streams``.
"""

from __future__ import annotations

from typing import Annotated

import redis.asyncio
from fastapi import Depends, Request

from api.config import ApiSettings


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_store(request: Request) -> redis.asyncio.Redis:
    """The job store's client (one connection pool per app)."""
    store: redis.asyncio.Redis = request.app.state.store
    return store


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[redis.asyncio.Redis, Depends(get_store)]
