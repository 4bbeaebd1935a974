"""Creating a job: claim its identity, store input and record in one transaction, send its task.

An identical request already in the store answers instead (``deduplicated``). Redis and broker
failures become ``broker-unavailable`` problems; a job whose task could not be sent is marked
failed, so no record waits for a message that does not exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio
from redis.exceptions import RedisError

from api.config import ApiSettings
from api.dedup import Deduplicator
from api.images import NormalizedImage
from api.problems import broker_unavailable
from api.task_sender import TaskSender
from jobstore.clock import now
from jobstore.errors import ErrorCode
from jobstore.ids import new_job_id
from jobstore.keys import dedup_key
from jobstore.records import JobRecord
from jobstore.states import JobState
from jobstore.transitions import add_create, add_mark_failed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    record: JobRecord
    deduplicated: bool


class JobSubmitter:
    """Turns a normalized image into a queued job (or the identical job that already exists)."""

    def __init__(
        self, settings: ApiSettings, client: redis.asyncio.Redis, dedup: Deduplicator, sender: TaskSender
    ) -> None:
        self.settings = settings
        self.redis = client
        self.dedup = dedup
        self.sender = sender

    async def submit(
        self, image: NormalizedImage, *, style: str, fmt: str, upload_digest: str, request_id: str | None
    ) -> Submission:
        """Create the job, or find the one with the same pixels, style and format; then send its task."""
        job_id = new_job_id()
        try:
            existing = await self.dedup.claim(image.digest, job_id)
            if existing is not None:
                await self.dedup.point(upload_digest, existing.id)
                return Submission(existing, deduplicated=True)
            record = self.new_record(job_id, image, style=style, fmt=fmt, request_id=request_id)
            record = record.model_copy(update={"upload_digest": upload_digest})
            pipe = self.redis.pipeline()
            add_create(pipe, record, image.raw_rgb)
            await pipe.execute()
        except RedisError:
            raise broker_unavailable("storing the job") from None
        await self._send(record)
        return Submission(record, deduplicated=False)

    def new_record(
        self, job_id: str, image: NormalizedImage, *, style: str, fmt: str, request_id: str | None
    ) -> JobRecord:
        """The queued record of a new job, with this gateway's TTLs."""
        return JobRecord(
            id=job_id,
            state=JobState.QUEUED,
            style=style,
            format=fmt,
            digest=image.digest,
            created_at=now(),
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
            await self.sender.send(record.id)
        except Exception:
            logger.warning("could not send the task; failing the job", extra={"job_id": record.id}, exc_info=True)
            await self._fail_unsent(record)
            raise broker_unavailable("sending the task") from None

    async def _fail_unsent(self, record: JobRecord) -> None:
        try:
            pipe = self.redis.pipeline()
            add_mark_failed(pipe, record, ErrorCode.BROKER_UNAVAILABLE, "The job could not be queued.")
            pipe.delete(*(dedup_key(d) for d in record.dedup_digests))
            await pipe.execute()
        except RedisError:
            logger.warning("could not mark the unsent job failed", extra={"job_id": record.id})
