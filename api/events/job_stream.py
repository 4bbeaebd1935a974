"""GET /jobs/{job_id}/events: a job's state changes as Server-Sent Events, pushed, not polled.

The stream starts with the job's current state, then sends one event per change; every event's
name is the job's status (``queued``, ``running``, ``succeeded``, ``failed``) and its data is the
JSON body GET /jobs/{job_id} would answer at that moment (so a queued job's event carries its
``queue_position``, and a new position is a new ``queued`` event; a video's segment that starts
or ends is a new ``running`` event, with its progress). The stream ends after a
terminal state, or with an ``expired`` event (a problem document) if the record disappears.

Changes arrive through the process's ``EventHub`` (the job store publishes every state change):
the stream subscribes before its first read, then reads the record again (one HGETALL) only when
a notice arrives. Nothing announces a new queue position (it moves when another job starts), so
while queued the stream re-reads every ``position_refresh_s``. A running job whose worker vanished
is handed back (``queued``) or failed by the workers' sweeper, which publishes that too. Another
client's job is a 404, exactly like an unknown one. Comment lines keep idle proxies from
closing the connection, and the stream ends after ``max_duration_s`` so no connection lives
forever, or within about a second of its API key being revoked (``api.tenancy.auth.key_revoked``);
EventSource clients reconnect by themselves and get the current state first.

Before any stream starts: 429 ``too-many-streams`` past the per-process or per-client cap
(``api.events.slots``; the slot is held until the stream ends or the client goes), 404 for an
unknown id, 503 when Redis is unreachable.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from redis.exceptions import RedisError

from api.deps import SettingsDep
from api.events.hub import Feed
from api.events.streams import EventHubDep, KeyWatch, StreamLimits, StreamLimitsDep, claim_slot, expired_event
from api.jobs.deps import JobReaderDep
from api.jobs.reader import JobReader, job_not_found
from api.problems import PROBLEM_RESPONSE, ApiError, broker_unavailable
from api.tenancy.clients import client_of
from jobstore.job_view import Job
from jobstore.records import JobRecord, JobState, is_job_id
from jobstore.video_view import VideoJob

logger = logging.getLogger(__name__)

router = APIRouter(tags=["jobs"])


@dataclass(frozen=True)
class Snapshot:
    """The job as GET /jobs/{id} shows it, and the record it was built from."""

    job: Job | VideoJob
    record: JobRecord


@dataclass(frozen=True)
class OpenStream:
    feed: Feed
    first: Snapshot
    client: str


async def read_snapshot(reader: JobReader, job_id: str, client: str) -> Snapshot | None:
    """The client's job now (one HGETALL, plus its position while queued), or None if it is unknown,
    expired or another client's."""
    record = await reader.read(job_id, client)
    if record is None:
        return None
    return Snapshot(await reader.view(record), record)


async def open_stream(
    job_id: str, request: Request, hub: EventHubDep, reader: JobReaderDep, settings: SettingsDep
) -> AsyncIterator[OpenStream]:
    """Admit (429), subscribe, read the job (404); the slot and subscription last until the stream ends."""
    client_id = client_of(request).id
    with claim_slot(hub, client_of(request)):
        if not is_job_id(job_id):
            raise job_not_found(job_id, settings.record_ttl_s)
        async with contextlib.AsyncExitStack() as stack:
            try:
                feed = await stack.enter_async_context(hub.follow(job_id))
            except TimeoutError as exc:
                raise broker_unavailable("subscribing to the job's events") from exc
            first = await read_snapshot(reader, job_id, client_id)
            if first is None:
                raise job_not_found(job_id, settings.record_ttl_s)
            yield OpenStream(feed, first, client_id)


def _next_read_in(snapshot: Snapshot, limits: StreamLimits) -> float:
    """Seconds until the stream must read the job although no notice came."""
    record = snapshot.record
    if record.state is JobState.QUEUED:
        return limits.position_refresh_s
    return math.inf


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    responses={404: PROBLEM_RESPONSE, 429: PROBLEM_RESPONSE},
)
async def follow_job(
    job_id: str,
    request: Request,
    reader: JobReaderDep,
    stream: Annotated[OpenStream, Depends(open_stream)],
    limits: StreamLimitsDep,
) -> AsyncIterator[ServerSentEvent]:
    """Follow a job: its current state, then every change, as Server-Sent Events."""
    clock = anyio.current_time
    ends_at = clock() + limits.max_duration_s
    feed = stream.feed
    sent: str | None = None
    beat_at = clock() + limits.heartbeat_s
    snapshot: Snapshot | None = stream.first
    revoked = KeyWatch(request)
    while snapshot is not None:
        if revoked.now():
            return
        body = snapshot.job.model_dump_json()
        if body != sent:
            retry = limits.reconnect_ms if sent is None else None
            yield ServerSentEvent(event=snapshot.job.status.value, raw_data=body, retry=retry)
            sent, beat_at = body, clock() + limits.heartbeat_s
        if snapshot.job.status.terminal:
            return
        read_at = clock() + _next_read_in(snapshot, limits)
        # Wait for a notice, a due read, the end of the stream's life; keep the line alive meanwhile.
        while not await feed.wait(min(read_at, beat_at, ends_at, revoked.check_at) - clock()) and clock() < read_at:
            if clock() >= ends_at or revoked.now():
                return
            if clock() >= beat_at:
                yield ServerSentEvent(comment="keep-alive")
                beat_at = clock() + limits.heartbeat_s
        if feed.lost:
            logger.warning("job store unreachable; ending the event stream", extra={"job_id": job_id})
            return
        try:
            snapshot = await read_snapshot(reader, job_id, stream.client)
        except RedisError:
            # Ending the stream makes EventSource reconnect; the reconnect answers 503 while Redis is down.
            logger.warning("job store unreachable; ending the event stream", extra={"job_id": job_id})
            return
    yield expired_event(ApiError("job-not-found", "The job expired while it was followed."), f"/jobs/{job_id}/events")
