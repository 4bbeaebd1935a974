"""GET /healthz, GET /readyz, GET /styles, and their response models."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from api.deps import SettingsDep
from api.jobs.deps import JobReaderDep
from api.problems import PROBLEM_RESPONSE, ApiError

router = APIRouter(tags=["service"])


class Style(BaseModel):
    name: str
    default: bool
    available: bool = Field(description="A live worker has this style loaded.")


class Styles(BaseModel):
    default: str
    styles: list[Style]


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str
    redis: str
    workers: int = Field(description="Worker processes with a live heartbeat.")
    queue_depth: int


@router.get("/healthz", response_model=Health)
async def read_health() -> Health:
    """The process is alive (no dependency is checked)."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: PROBLEM_RESPONSE})
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
