"""JobQueue: the gateway's side of the job store (asyncio Redis) and the Celery client.

Accepting a job: normalize the upload off the event loop behind a semaphore (so at most
ANIMEGAN_DECODE_CONCURRENCY decoded images exist at once), answer an identical request from the
job that already has (or is computing) its result, else store the raw RGB input and the record in
one transaction and send the task by name with only the job id. Redis and broker failures become
``broker-unavailable`` problems; a job whose task could not be sent is marked failed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import anyio
import redis.asyncio
from celery import Celery
from redis.exceptions import RedisError, WatchError
from starlette.concurrency import run_in_threadpool

from api.config import ApiSettings
from api.problems import ApiError
from inference import errors as inference_errors
from inference.imageio import decode_image
from worker import contract
from worker.contract import ErrorCode, JobRecord, JobState

logger = logging.getLogger(__name__)

RETRY_AFTER_MAX_S = 3600


@dataclass(frozen=True)
class NormalizedImage:
    raw_rgb: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    digest: str  # contract.request_digest of these pixels, style and format


@dataclass(frozen=True)
class Submission:
    record: JobRecord
    deduplicated: bool


def broker_down(what: str) -> ApiError:
    return ApiError(
        "broker-unavailable", f"The job store is unreachable ({what}); try again shortly.", headers={"Retry-After": "5"}
    )


def create_celery_client(settings: ApiSettings) -> Celery:
    """A producer-only Celery app: JSON messages, a bounded publish retry, no result backend."""
    client = Celery("animegan-api", broker=settings.broker)
    client.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=contract.QUEUE_NAME,
        task_ignore_result=True,
        broker_connection_timeout=3,
        broker_connection_retry=False,
        broker_transport_options={"socket_connect_timeout": 3, "socket_timeout": 5},
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
    )
    return client


class JobQueue:
    def __init__(self, settings: ApiSettings, client: redis.asyncio.Redis, celery: Celery) -> None:
        self.settings = settings
        self.redis = client
        self.celery = celery
        self._decode_slots = anyio.Semaphore(settings.decode_concurrency)

    async def normalize(self, data: bytes, *, style: str, fmt: str) -> NormalizedImage:
        """Decode, orient, downscale and hash in a worker thread; raises ApiError for bad images."""
        async with self._decode_slots:
            try:
                return await anyio.to_thread.run_sync(self._normalize_sync, data, style, fmt)
            except inference_errors.UnsupportedFormatError as exc:
                raise ApiError("unsupported-media-type", str(exc)) from None
            except inference_errors.ImageTooLargeError as exc:
                raise ApiError("too-many-pixels", str(exc)) from None
            except inference_errors.InferenceError as exc:
                raise ApiError("invalid-image", str(exc)) from None

    def _normalize_sync(self, data: bytes, style: str, fmt: str) -> NormalizedImage:
        decoded = decode_image(data, max_side=self.settings.max_side, max_pixels=self.settings.max_pixels)
        raw = decoded.image.tobytes()
        return NormalizedImage(
            raw_rgb=raw,
            width=decoded.width,
            height=decoded.height,
            original_width=decoded.original_width,
            original_height=decoded.original_height,
            digest=contract.request_digest(raw, decoded.width, decoded.height, style, fmt),
        )

    async def check_capacity(self) -> None:
        """Refuse new work while ANIMEGAN_MAX_QUEUE_DEPTH jobs wait (503 with an honest Retry-After)."""
        try:
            pipe = self.redis.pipeline()
            contract.queue_prune_waiting(pipe, self.settings.record_ttl_s)
            pipe.zcard(contract.QUEUED_KEY)
            depth = int((await pipe.execute())[1])
            if depth < self.settings.max_queue_depth:
                return
            wait_s = await self.estimate_wait_s(depth)
        except RedisError:
            raise broker_down("queue depth") from None
        retry_after = str(min(RETRY_AFTER_MAX_S, math.ceil(wait_s)))
        detail = f"{depth} jobs are waiting, the limit is {self.settings.max_queue_depth}; retry in {retry_after} s."
        raise ApiError("queue-full", detail, headers={"Retry-After": retry_after}, extra={"queue_depth": depth})

    async def estimate_wait_s(self, jobs_ahead: int) -> float:
        """Seconds until a job with ``jobs_ahead`` before it would finish, from recent service times."""
        service = await self.redis.get(contract.SERVICE_TIME_KEY)
        workers = len(await self.live_workers())
        service_s = float(service) if service else contract.DEFAULT_SERVICE_S
        return contract.estimate_wait_s(jobs_ahead, service_s, workers)

    async def live_workers(self) -> list[contract.Heartbeat]:
        raw = await self.redis.hgetall(contract.WORKERS_KEY)
        return contract.live_heartbeats(raw)

    async def find_existing(self, upload_digest: str) -> JobRecord | None:
        """The job an earlier upload of the same bytes (same style and format) created, if it can answer."""
        found = await self.redis.get(contract.dedup_key(upload_digest))
        record = await self.read(contract.text(found)) if found else None
        return record if record is not None and await self._can_answer(record) else None

    async def submit(
        self, image: NormalizedImage, *, style: str, fmt: str, upload_digest: str, request_id: str | None
    ) -> Submission:
        """Create the job, or find the one with the same pixels, style and format; then send its task."""
        digest = image.digest
        job_id = contract.new_job_id()
        try:
            existing = await self._claim_digest(digest, job_id)
            if existing is not None:
                await self.redis.set(contract.dedup_key(upload_digest), existing.id, ex=self.settings.record_ttl_s)
                return Submission(existing, deduplicated=True)
            record = self._new_record(job_id, image, style=style, fmt=fmt, digest=digest, request_id=request_id)
            record = record.model_copy(update={"upload_digest": upload_digest})
            pipe = self.redis.pipeline()
            contract.queue_create(pipe, record, image.raw_rgb)
            await pipe.execute()
        except RedisError:
            raise broker_down("storing the job") from None
        await self._send(record)
        return Submission(record, deduplicated=False)

    async def _claim_digest(self, digest: str, job_id: str) -> JobRecord | None:
        """The live job for ``digest``, or None after pointing the digest at ``job_id``."""
        key = contract.dedup_key(digest)
        if await self.redis.set(key, job_id, nx=True, ex=self.settings.record_ttl_s):
            return None
        other = await self.redis.get(key)
        record = await self.read(contract.text(other)) if other else None
        if record is not None and await self._can_answer(record):
            return record
        await self.redis.set(key, job_id, ex=self.settings.record_ttl_s)
        return None

    async def _can_answer(self, record: JobRecord) -> bool:
        """A failed job, or a succeeded one whose result is gone, cannot answer a new request."""
        if record.state is JobState.FAILED:
            return False
        if record.state is JobState.SUCCEEDED:
            return bool(await self.redis.exists(contract.result_key(record.id)))
        return True

    def _new_record(
        self, job_id: str, image: NormalizedImage, *, style: str, fmt: str, digest: str, request_id: str | None
    ) -> JobRecord:
        return JobRecord(
            id=job_id,
            state=JobState.QUEUED,
            style=style,
            format=fmt,
            digest=digest,
            created_at=contract.now(),
            width=image.width,
            height=image.height,
            original_width=image.original_width,
            original_height=image.original_height,
            input_ttl_s=self.settings.input_ttl_s,
            result_ttl_s=self.settings.result_ttl_s,
            record_ttl_s=self.settings.record_ttl_s,
            request_id=request_id,
        )

    async def _send(self, record: JobRecord) -> None:
        try:
            await run_in_threadpool(
                self.celery.send_task, contract.TASK_NAME, args=[record.id], queue=contract.QUEUE_NAME
            )
        except Exception:
            logger.warning("could not send the task; failing the job", extra={"job_id": record.id}, exc_info=True)
            await self._fail_unsent(record)
            raise broker_down("sending the task") from None

    async def _fail_unsent(self, record: JobRecord) -> None:
        try:
            pipe = self.redis.pipeline()
            contract.queue_failed(pipe, record, ErrorCode.BROKER_UNAVAILABLE, "The job could not be queued.")
            pipe.delete(*(contract.dedup_key(d) for d in record.dedup_digests))
            await pipe.execute()
        except RedisError:
            logger.warning("could not mark the unsent job failed", extra={"job_id": record.id})

    async def read(self, job_id: str) -> JobRecord | None:
        if not contract.is_job_id(job_id):
            return None
        raw = await self.redis.hgetall(contract.job_key(job_id))
        record = JobRecord.from_hash(raw) if raw else None
        if record is not None and contract.is_stale(record):
            return await self._end_stale(job_id)
        return record

    async def _end_stale(self, job_id: str) -> JobRecord | None:
        """Fail a job still running past its deadline (its worker vanished); atomic against late writers."""
        key = contract.job_key(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                raw = await pipe.hgetall(key)
                record = JobRecord.from_hash(raw) if raw else None
                if record is not None and contract.is_stale(record):
                    pipe.multi()  # type: ignore[no-untyped-call]
                    contract.queue_failed(pipe, record, ErrorCode.WORKER_LOST, contract.STALE_DETAIL)
                    await pipe.execute()
                    logger.warning("job ran past its deadline; marked failed", extra={"job_id": job_id})
            except WatchError:
                pass  # someone else changed the job meanwhile: read what they wrote
        raw = await self.redis.hgetall(key)
        return JobRecord.from_hash(raw) if raw else None

    async def position(self, record: JobRecord) -> int | None:
        """1 for the next job to start, None once the job has left the queue."""
        if record.state is not JobState.QUEUED:
            return None
        rank = await self.redis.zrank(contract.QUEUED_KEY, record.id)
        return rank + 1 if isinstance(rank, int) else None

    async def read_result(self, job_id: str) -> bytes | None:
        data = await self.redis.get(contract.result_key(job_id))
        return data.encode() if isinstance(data, str) else data
