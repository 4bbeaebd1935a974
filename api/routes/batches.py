"""POST /batches, GET /batches/{id}, GET /batches/{id}/events, GET /batches/{id}/results.zip.

A batch is up to ANIMEGAN_MAX_BATCH_FILES images with one set of options (``api.batches``). Its
body lists every file in order, with its job (the body of GET /jobs/{id}) or the problem that kept
it out, and counts per state. Like a job, a batch is visible to the client that created it only.

The event stream follows every job's channel through the process's ``EventHub`` (one stream slot,
like a job's stream) and sends the batch body as an event named after the batch's status whenever
it changed; it ends with ``completed`` (every job ended). ``results.zip`` holds the results that
succeeded so far, built while sent (``api.batch_zip``); ``X-Animegan-Pending`` counts the jobs
still queued or running, whose results a later download will add.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from redis.exceptions import RedisError

from api import metrics
from api.batch_names import zip_names
from api.batch_zip import ZipMember, stream_zip
from api.batches import BatchRequest, BatchService, not_found
from api.callbacks import check_callback_url
from api.clients import client_of
from api.deps import GatewayDep
from api.event_hub import Feed
from api.problems import PROBLEMS, TYPE_PREFIX, ApiError, broker_unavailable
from api.routes.events import KeyWatch, StreamLimits, get_stream_limits
from api.routes.jobs import STYLIZE_BODY, choose_framing, choose_output
from api.upload import read_batch_upload
from imaging.formats import FILE_EXTENSIONS
from jobstore.batch_view import Batch
from jobstore.records import JobState

logger = logging.getLogger(__name__)

router = APIRouter(tags=["batches"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


def _batch_body() -> dict[str, Any]:
    schema = dict(STYLIZE_BODY["requestBody"]["content"]["multipart/form-data"]["schema"])
    properties = dict(schema["properties"])
    properties["image"] = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "1 to ANIMEGAN_MAX_BATCH_FILES JPEG, PNG or WebP files, each judged on its own.",
    }
    schema["properties"] = properties
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def get_batches(gateway: GatewayDep) -> BatchService:
    return BatchService(gateway)


BatchesDep = Annotated[BatchService, Depends(get_batches)]


@router.post(
    "/batches",
    status_code=202,
    response_model=Batch,
    openapi_extra=_batch_body(),
    responses=dict.fromkeys((400, 413, 415, 422, 429, 503), _PROBLEM),
)
async def create_batch(request: Request, response: Response, batches: BatchesDep) -> Batch:
    """Submit several photos with the same options; answers 202 with the batch and its status URL."""
    client = client_of(request)
    try:
        gateway = batches.gateway
        settings = gateway.settings
        upload = await read_batch_upload(request, settings.max_batch_files)
        style, fmt = choose_output(upload.options, settings)
        mode, crop = choose_framing(upload.options)
        callback_url = await check_callback_url(upload.options.callback_url, settings)
        for part in upload.files:  # room in the store for every job of the batch (503 store-full)
            await gateway.store_budget.check(len(part.data))
        await gateway.admission.precheck(client)
        request_id = getattr(request.state, "request_id", None)
        batch = await batches.create(upload, BatchRequest(client, style, fmt, mode, crop, callback_url, request_id))
    except ApiError as exc:
        metrics.observe_rejection(exc.slug, client=client.label)
        raise
    for item in batch.jobs:
        if item.job is not None:
            metrics.observe_submitted(len(upload.files[item.index].data), deduplicated=False)
    response.headers["Location"] = batch.links.status
    response.headers["Retry-After"] = str(await batches.poll_hint(batch))
    return batch


async def _read(batches: BatchService, batch_id: str, request: Request) -> Batch:
    batch = await batches.describe(batch_id, client_of(request).id)
    if batch is None:
        raise not_found(batch_id, batches.gateway.settings.record_ttl_s)
    return batch


@router.get("/batches/{batch_id}", response_model=Batch, responses={404: _PROBLEM})
async def read_batch(batch_id: str, request: Request, response: Response, batches: BatchesDep) -> Batch:
    """Status of a batch: counts per state and each file's job (or problem)."""
    batch = await _read(batches, batch_id, request)
    if batch.status != "completed":
        response.headers["Retry-After"] = str(await batches.poll_hint(batch))
    return batch


@router.get(
    "/batches/{batch_id}/results.zip",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The results that succeeded so far."},
        404: _PROBLEM,
        409: _PROBLEM,
    },
)
async def read_batch_results(batch_id: str, request: Request, batches: BatchesDep) -> StreamingResponse:
    """A zip of the batch's succeeded results, named after the uploads; 409 while none has succeeded."""
    batch = await _read(batches, batch_id, request)
    succeeded = [item.job for item in batch.jobs if item.job is not None and item.job.status is JobState.SUCCEEDED]
    if not succeeded:
        if batch.status == "completed":
            # Also when every job was deleted or expired: nothing is left to zip, and nothing will come.
            raise ApiError("batch-no-results", "Every job of the batch ended and none succeeded.")
        hint = await batches.poll_hint(batch)
        detail = f"No job of the batch has succeeded yet; retry in {hint} s."
        raise ApiError("batch-not-ready", detail, headers={"Retry-After": str(hint)})
    # Every job of a batch has the batch's format: a succeeded one says which.
    names = zip_names([item.filename for item in batch.jobs], FILE_EXTENSIONS[succeeded[0].output.format])
    members = [
        ZipMember(name, item.job.id, item.job.finished_at.timestamp() if item.job.finished_at else 0.0)
        for name, item in zip(names, batch.jobs, strict=True)
        if item.job is not None and item.job.status is JobState.SUCCEEDED
    ]
    headers = {
        "Content-Disposition": f'attachment; filename="batch-{batch.id}.zip"',
        "X-Animegan-Pending": str(batch.pending),
        "Cache-Control": "private, no-store",
    }
    reader = batches.gateway.reader
    return StreamingResponse(stream_zip(members, reader.read_result), media_type="application/zip", headers=headers)


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
    batch_id: str, request: Request, gateway: GatewayDep, batches: BatchesDep
) -> AsyncIterator[tuple[list[Feed], Batch]]:
    """Admit (429), read the batch (404), subscribe to every job; the slot lasts until the stream ends."""
    hub = gateway.events
    client = client_of(request)
    try:
        hub.slots.claim(client.id)
    except ApiError as exc:
        metrics.observe_rejection(exc.slug, client=client.label)
        raise
    try:
        first = await _read(batches, batch_id, request)
        async with contextlib.AsyncExitStack() as stack:
            feeds = []
            for item in first.jobs:
                if item.job is not None:
                    try:
                        feeds.append(await stack.enter_async_context(hub.follow(item.job.id)))
                    except TimeoutError as exc:
                        raise broker_unavailable("subscribing to the batch's events") from exc
            # Read again once subscribed: a change between the first read and the subscriptions is seen.
            yield feeds, await _read(batches, batch_id, request)
    finally:
        hub.slots.release(client.id)


def _expired(batch_id: str) -> ServerSentEvent:
    status, title = PROBLEMS["batch-not-found"]
    problem = {
        "type": TYPE_PREFIX + "batch-not-found",
        "title": title,
        "status": status,
        "detail": "The batch expired while it was followed.",
        "instance": f"/batches/{batch_id}/events",
    }
    return ServerSentEvent(event="expired", data=problem)


@router.get(
    "/batches/{batch_id}/events",
    response_class=EventSourceResponse,
    responses={404: _PROBLEM, 429: _PROBLEM},
)
async def follow_batch(
    batch_id: str,
    request: Request,
    batches: BatchesDep,
    stream: Annotated[tuple[list[Feed], Batch], Depends(open_batch_stream)],
    limits: Annotated[StreamLimits, Depends(get_stream_limits)],
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
    yield _expired(batch_id)
