"""Creating a job: one atomic ADMIT (limits, dedup, idempotency, enqueue), then its message.

The job store's ADMIT script (``jobstore.queue``) decides everything at once: the client's
Idempotency-Key replays, the client's identical job answers (deduplicated), a full queue or an
exhausted client quota refuses, or the input and record are stored and the job queued. Redis and
broker failures become ``broker-unavailable`` problems; a job whose message could not be sent is
marked failed, so no record waits for a message that does not exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio
from redis.exceptions import RedisError, WatchError

from api import idempotency
from api.admission import Admission
from api.clients import ClientIdentity
from api.config import ApiSettings
from api.images import NormalizedImage
from api.job_reader import JobReader
from api.problems import ApiError, broker_unavailable
from api.task_sender import TaskSender
from imaging.crops import DEFAULT_MODE, CropBox
from jobstore.keys import job_key
from jobstore.queue import AsyncQueueScripts, admit_call, parse_admitted
from jobstore.records import ErrorCode, JobRecord, JobState, new_job_id, now
from jobstore.transitions import add_delete, add_mark_failed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    record: JobRecord
    deduplicated: bool = False
    replayed: bool = False


@dataclass(frozen=True)
class JobRequest:
    """What the client asked for, besides the image."""

    client: ClientIdentity
    style: str
    fmt: str
    upload_digest: str
    request_id: str | None = None
    idempotency_key: str | None = None
    mode: str = DEFAULT_MODE
    crop: CropBox | None = None
    callback_url: str | None = None


class JobSubmitter:
    """Turns a normalized image into a queued job (or the client's identical job that already exists)."""

    def __init__(
        self,
        settings: ApiSettings,
        client: redis.asyncio.Redis,
        reader: JobReader,
        admission: Admission,
        sender: TaskSender,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.scripts = AsyncQueueScripts(client)
        self.reader = reader
        self.admission = admission
        self.sender = sender

    async def submit(self, image: NormalizedImage, request: JobRequest) -> Submission:
        """Admit the job atomically; then send its message (only for a job this call created)."""
        record = self.new_record(new_job_id(), image, request)
        keys, args = admit_call(
            record, image.raw_rgb, self.admission.limits, request.idempotency_key, request.upload_digest
        )
        try:
            admitted = parse_admitted(await self.scripts.admit(keys=keys, args=args))
        except RedisError:
            raise broker_unavailable("storing the job") from None
        if admitted.outcome == "created":
            await self._send(record)
            return Submission(record)
        if admitted.outcome == "queue-full":
            raise await self.admission.queue_full(admitted.count)
        if admitted.outcome == "client-quota":
            raise await self.admission.client_quota(request.client, admitted.count)
        if admitted.outcome == "idempotency-key-reused":
            raise idempotency.reused()
        existing = await self.reader.read(admitted.job_id, request.client.id)
        if existing is None:
            raise ApiError("idempotency-key-in-use", "The first request with this key is still being accepted; retry.")
        return Submission(
            existing, deduplicated=admitted.outcome == "deduplicated", replayed=admitted.outcome == "replayed"
        )

    def new_record(self, job_id: str, image: NormalizedImage, request: JobRequest) -> JobRecord:
        """The queued record of a new job, with this gateway's TTLs."""
        return JobRecord(
            id=job_id,
            state=JobState.QUEUED,
            style=request.style,
            format=request.fmt,
            digest=image.digest,
            upload_digest=request.upload_digest,
            created_at=now(),
            width=image.width,
            height=image.height,
            original_width=image.original_width,
            original_height=image.original_height,
            input_ttl_s=self.settings.input_ttl_s,
            result_ttl_s=self.settings.result_ttl_s,
            record_ttl_s=self.settings.record_ttl_s,
            request_id=request.request_id,
            client=request.client.id,
            mode=image.mode,
            crop=None if image.crop is None else str(image.crop),
            callback_url=request.callback_url,
        )

    async def _send(self, record: JobRecord) -> None:
        try:
            await self.sender.send(record.id)
        except Exception:
            logger.warning("could not send the task; failing the job", extra={"job_id": record.id}, exc_info=True)
            await self._fail_unsent(record)
            raise broker_unavailable("sending the task") from None

    async def _fail_unsent(self, record: JobRecord) -> None:
        try:
            pipe = self.redis.pipeline()
            add_mark_failed(pipe, record, ErrorCode.BROKER_UNAVAILABLE, "The job could not be queued.")
            await pipe.execute()
        except RedisError:
            logger.warning("could not mark the unsent job failed", extra={"job_id": record.id})

    async def delete(self, record: JobRecord) -> JobRecord | None:
        """Forget a job unless a worker runs it now (DELETE /jobs/{id}): record, input, result, dedup entries.

        Returns None once deleted (or already gone), else the running record. Atomic against a
        worker claiming the job meanwhile (WATCH on its record).
        """
        key = job_key(record.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hgetall(key)
                    if not raw:
                        return None
                    current = JobRecord.from_hash(raw)
                    if current.state is JobState.RUNNING:
                        return current
                    pipe.multi()  # type: ignore[no-untyped-call]
                    add_delete(pipe, current)
                    await pipe.execute()
                    return None
                except WatchError:
                    continue
