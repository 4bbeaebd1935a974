"""GET /healthz, GET /readyz, GET /styles."""

from __future__ import annotations

from fastapi import APIRouter
from redis.exceptions import RedisError

from api.deps import JobReaderDep, SettingsDep
from api.problems import ApiError
from api.schemas import Health, Readiness, Style, Styles

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=Health)
async def read_health() -> Health:
    """The process is alive (no dependency is checked)."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"content": {"application/problem+json": {}}}})
async def read_readiness(reader: JobReaderDep) -> Readiness:
    """Ready when Redis answers and at least one worker process has a live heartbeat."""
    try:
        await reader.redis.ping()
        workers = await reader.live_workers()
        depth = await reader.waiting_count()
    except (RedisError, OSError):
        raise ApiError("not-ready", "Redis is unreachable.", headers={"Retry-After": "5"}) from None
    if not workers:
        raise ApiError("not-ready", "No worker process is running (no live heartbeat).", headers={"Retry-After": "5"})
    return Readiness(status="ready", redis="ok", workers=len(workers), queue_depth=depth)


@router.get("/styles", response_model=Styles)
async def read_styles(reader: JobReaderDep, settings: SettingsDep) -> Styles:
    """The styles this service accepts, and whether a live worker has each one loaded."""
    try:
        loaded = {s for beat in await reader.live_workers() for s in beat.styles}
    except RedisError:
        loaded = set()
    styles = [Style(name=s, default=s == settings.default_style, available=s in loaded) for s in settings.styles]
    return Styles(default=settings.default_style, styles=styles)
