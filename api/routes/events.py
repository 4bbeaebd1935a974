"""GET /jobs/{job_id}/events: a job's state changes as Server-Sent Events.

The stream starts with the job's current state, then sends one event per change; every event's
name is the job's status (``queued``, ``running``, ``succeeded``, ``failed``) and its data is the
JSON body GET /jobs/{job_id} would answer at that moment (so a queued job's event carries its
``queue_position``, and a new position is a new ``queued`` event). The stream ends after a
terminal state, or with an ``expired`` event (a problem document) if the record disappears.

It reads the job record every ``poll_s`` (one HGETALL, plus a ZRANK while queued): the job store
publishes nothing, and a poll that cheap keeps the gateway stateless. Comment lines keep idle
proxies from closing the connection, and the stream ends after ``max_duration_s`` so no connection
lives forever; EventSource clients reconnect by themselves and get the current state first.
An unknown id is a 404 problem before any stream starts.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent
from redis.exceptions import RedisError

from api.deps import JobReaderDep, SettingsDep
from api.job_reader import JobReader
from api.problems import PROBLEMS, TYPE_PREFIX, ApiError
from api.schemas import Job

logger = logging.getLogger(__name__)

router = APIRouter(tags=["jobs"])


@dataclass(frozen=True)
class StreamLimits:
    """Timing of one event stream (a dependency, so tests can shorten it)."""

    poll_s: float = 0.5
    heartbeat_s: float = 10.0
    max_duration_s: float = 300.0
    # Sent as the stream's ``retry:`` field: how long EventSource waits before reconnecting.
    reconnect_ms: int = 2000


def get_stream_limits() -> StreamLimits:
    return StreamLimits()


async def read_current_job(job_id: str, reader: JobReaderDep, settings: SettingsDep) -> Job:
    """The job as GET /jobs/{job_id} shows it, or a 404 problem (raised before the stream starts)."""
    job = await read_job_now(reader, job_id)
    if job is None:
        detail = f"No job {job_id[:64]!r}; jobs are forgotten {settings.record_ttl_s} s after they end."
        raise ApiError("job-not-found", detail)
    return job


async def read_job_now(reader: JobReader, job_id: str) -> Job | None:
    """The same body GET /jobs/{job_id} answers now, or None if the job is unknown or expired."""
    record = await reader.read(job_id)
    return None if record is None else Job.from_record(record, position=await reader.position(record))


def _expired(job_id: str) -> ServerSentEvent:
    status, title = PROBLEMS["job-not-found"]
    problem = {
        "type": TYPE_PREFIX + "job-not-found",
        "title": title,
        "status": status,
        "detail": "The job expired while it was followed.",
        "instance": f"/jobs/{job_id}/events",
    }
    return ServerSentEvent(event="expired", data=problem)


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    responses={404: {"content": {"application/problem+json": {}}}},
)
async def follow_job(
    job_id: str,
    reader: JobReaderDep,
    first: Annotated[Job, Depends(read_current_job)],
    limits: Annotated[StreamLimits, Depends(get_stream_limits)],
) -> AsyncIterator[ServerSentEvent]:
    """Follow a job: its current state, then every change, as Server-Sent Events."""
    clock = anyio.current_time
    started = last_sent = clock()
    sent: str | None = None
    job: Job | None = first
    while job is not None:
        body = job.model_dump_json()
        if body != sent:
            retry = limits.reconnect_ms if sent is None else None
            yield ServerSentEvent(event=job.status.value, raw_data=body, retry=retry)
            sent, last_sent = body, clock()
        if job.status.terminal or clock() - started >= limits.max_duration_s:
            return
        if clock() - last_sent >= limits.heartbeat_s:
            yield ServerSentEvent(comment="keep-alive")
            last_sent = clock()
        await anyio.sleep(limits.poll_s)
        try:
            job = await read_job_now(reader, job_id)
        except RedisError:
            # Ending the stream makes EventSource reconnect; the reconnect answers 503 while Redis is down.
            logger.warning("job store unreachable; ending the event stream", extra={"job_id": job_id})
            return
    yield _expired(job_id)
