"""GET /batches/{batch_id}/events: a batch's progress as Server-Sent Events.

The stream follows every job's channel through the process's ``EventHub`` (one stream slot, like a
job's stream) and sends the batch body (GET /batches/{id}) as an event named after the batch's
status whenever it changed; it ends with ``completed`` (every job ended), with an ``expired``
event (a problem document) if the batch disappears, after ``max_duration_s``, or within about a
second of its API key being revoked. Before it starts: 429 ``too-many-streams``, 404 for an
unknown batch (or another client's), 503 when Redis is unreachable.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from redis.exceptions import RedisError

from api.batches.reader import BatchReaderDep
from api.events.hub import Feed
from api.events.streams import EventHubDep, KeyWatch, StreamLimitsDep, claim_slot, expired_event
from api.problems import PROBLEM_RESPONSE, ApiError, broker_unavailable
from api.tenancy.clients import client_of
from jobstore.batch_view import Batch

logger = logging.getLogger(__name__)

router = APIRouter(tags=["batches"])


async def _wait_any(feeds: Sequence[Feed], timeout_s: float) -> bool:
    """True when any feed got a notice within ``timeout_s`` (notices of others may be consumed too:
    any notice means the whole batch is read again)."""
    noticed = False
    with anyio.move_on_after(max(0.0, timeout_s)):
        async with anyio.create_task_group() as group:

            async def one(feed: Feed) -> None:
                nonlocal noticed
                if await feed.wait(math.inf):
                    noticed = True
                    group.cancel_scope.cancel()

            for feed in feeds:
                group.start_soon(one, feed)
    return noticed


async def open_batch_stream(
    batch_id: str, request: Request, hub: EventHubDep, batches: BatchReaderDep
) -> AsyncIterator[tuple[list[Feed], Batch]]:
    """Admit (429), read the batch (404), subscribe to every job; the slot lasts until the stream ends."""
    client = client_of(request)
    with claim_slot(hub, client):
        first = await batches.read(batch_id, client.id)
        async with contextlib.AsyncExitStack() as stack:
            feeds = []
            for item in first.jobs:
                if item.job is not None:
                    try:
                        feeds.append(await stack.enter_async_context(hub.follow(item.job.id)))
                    except TimeoutError as exc:
                        raise broker_unavailable("subscribing to the batch's events") from exc
            # Read again once subscribed: a change between the first read and the subscriptions is seen.
            yield feeds, await batches.read(batch_id, client.id)


@router.get(
    "/batches/{batch_id}/events",
    response_class=EventSourceResponse,
    responses={404: PROBLEM_RESPONSE, 429: PROBLEM_RESPONSE},
)
async def follow_batch(
    batch_id: str,
    request: Request,
    batches: BatchReaderDep,
    stream: Annotated[tuple[list[Feed], Batch], Depends(open_batch_stream)],
    limits: StreamLimitsDep,
) -> AsyncIterator[ServerSentEvent]:
    """Follow a batch: its current state, then every change, as Server-Sent Events."""
    clock = anyio.current_time
    ends_at = clock() + limits.max_duration_s
    feeds, snapshot = stream
    sent: str | None = None
    beat_at = clock() + limits.heartbeat_s
    current: Batch | None = snapshot
    revoked = KeyWatch(request)
    while current is not None:
        if revoked.now():
            return
        body = current.model_dump_json()
        if body != sent:
            retry = limits.reconnect_ms if sent is None else None
            yield ServerSentEvent(event=current.status, raw_data=body, retry=retry)
            sent, beat_at = body, clock() + limits.heartbeat_s
        if current.status == "completed":
            return
        # Queue positions move without a notice: re-read while a job waits.
        read_at = clock() + (limits.position_refresh_s if current.counts.queued else math.inf)
        while (
            not await _wait_any(feeds, min(read_at, beat_at, ends_at, revoked.check_at) - clock()) and clock() < read_at
        ):
            if clock() >= ends_at or revoked.now():
                return
            if clock() >= beat_at:
                yield ServerSentEvent(comment="keep-alive")
                beat_at = clock() + limits.heartbeat_s
        if any(feed.lost for feed in feeds):
            logger.warning("job store unreachable; ending the batch event stream", extra={"batch_id": batch_id})
            return
        try:
            current = await batches.describe(batch_id, client_of(request).id)
        except RedisError:
            logger.warning("job store unreachable; ending the batch event stream", extra={"batch_id": batch_id})
            return
    error = ApiError("batch-not-found", "The batch expired while it was followed.")
    yield expired_event(error, f"/batches/{batch_id}/events")
