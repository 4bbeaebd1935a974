"""Creating and reading batches: every file judged on its own, the good ones admitted all at once.

``BatchService.create`` normalises each ``image`` part (bounded by the gateway's decode slots) and
turns a bad one (over the size limit, not an image, undecodable, too many pixels) into an entry
carrying its problem. The files that passed are queued by one ``ADMIT_BATCH`` script, all of them
or none (503 queue-full / 429 client-quota, with Retry-After, from ``api.admission.Admission``),
then one message per job is sent. Batch jobs are never deduplicated: each file is a job of its own.
A batch, like a job, belongs to the client that created it: another client's is not found.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import anyio
from redis.exceptions import RedisError

from api.batch_names import display_name
from api.clients import ClientIdentity
from api.gateway import Gateway
from api.images import NormalizedImage
from api.problems import TYPE_PREFIX, ApiError, broker_unavailable
from api.submission import JobRequest
from api.upload import BatchUpload, UploadedFile, too_large
from imaging.crops import CropBox
from imaging.errors import ImageError, UnsupportedFormatError
from imaging.formats import require_allowed_format
from jobstore.batch_view import Batch
from jobstore.batches import BatchEntry, BatchRecord, admit_batch_call, parse_batch_admitted, read_batch
from jobstore.job_view import Job
from jobstore.queue import AsyncQueueScripts
from jobstore.records import ErrorCode, JobRecord, is_job_id, new_job_id, now
from jobstore.transitions import add_mark_failed

logger = logging.getLogger(__name__)

# Poll hints never ask a client to wait longer than this for a status change.
POLL_HINT_MAX_S = 30


@dataclass(frozen=True)
class BatchRequest:
    """What applies to every file of the batch."""

    client: ClientIdentity
    style: str
    fmt: str
    mode: str
    crop: CropBox | None
    callback_url: str | None
    request_id: str | None


def problem_of(error: ApiError) -> dict[str, object]:
    return {"type": TYPE_PREFIX + error.slug, "title": error.title, "status": error.status, "detail": error.detail}


class BatchService:
    """The batch side of the gateway, built on its parts (normaliser, admission, reader, sender)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.scripts = AsyncQueueScripts(gateway.redis)

    async def create(self, upload: BatchUpload, request: BatchRequest) -> Batch:
        """Judge each file, admit the good ones at once, send their messages; the batch as created."""
        judged = await self._judge_all(upload.files, request)
        if not any(isinstance(j, NormalizedImage) for j in judged):
            problems = [
                {"index": i, "filename": display_name(f.filename, i), "problem": j}
                for i, (f, j) in enumerate(zip(upload.files, judged, strict=True))
            ]
            raise ApiError("batch-rejected", "No file of the batch is a usable image.", extra={"jobs": problems})
        batch_id = new_job_id()
        entries, jobs = [], []
        for index, (file, outcome) in enumerate(zip(upload.files, judged, strict=True)):
            name = display_name(file.filename, index)
            if isinstance(outcome, NormalizedImage):
                record = self._record(new_job_id(), outcome, request)
                jobs.append((record, outcome.raw_rgb))
                entries.append(BatchEntry(index, name, job_id=record.id))
            else:
                entries.append(BatchEntry(index, name, problem=outcome))
        batch = BatchRecord(
            id=batch_id,
            client=request.client.id,
            created_at=now(),
            style=request.style,
            format=request.fmt,
            record_ttl_s=self.gateway.settings.record_ttl_s,
            entries=entries,
            callback_url=request.callback_url,
        )
        await self._admit(batch, jobs, request.client)
        for record, _ in jobs:
            await self._send(record)
        described = await self.describe(batch_id, request.client.id)
        assert described is not None  # just written; record TTLs are at least a second
        return described

    async def _judge_all(
        self, files: list[UploadedFile], request: BatchRequest
    ) -> list[NormalizedImage | dict[str, object]]:
        judged: list[NormalizedImage | dict[str, object]] = [{} for _ in files]

        async def judge(index: int) -> None:
            try:
                judged[index] = await self._judge(files[index], index, request)
            except ApiError as exc:
                judged[index] = problem_of(exc)

        # The normaliser's decode slots bound how many files are decoded at once.
        async with anyio.create_task_group() as group:
            for index in range(len(files)):
                group.start_soon(judge, index)
        return judged

    async def _judge(self, file: UploadedFile, index: int, request: BatchRequest) -> NormalizedImage:
        data = file.data
        if not file.is_file:
            detail = f"Part {index + 1} named 'image' has no filename: send every image as a file part."
            raise ApiError(
                "validation-error", detail, extra={"errors": [{"loc": ["body", "image", index], "msg": detail}]}
            )
        limit = self.gateway.settings.max_upload_bytes
        if len(data) > limit:
            raise too_large(limit)
        # Judged by its bytes before it waits for a decode slot, with the answers of POST /stylize.
        try:
            require_allowed_format(data)
        except UnsupportedFormatError as exc:
            raise ApiError("unsupported-media-type", str(exc)) from None
        except ImageError as exc:
            raise ApiError("invalid-image", str(exc)) from None
        return await self.gateway.images.normalize(
            data, style=request.style, fmt=request.fmt, mode=request.mode, crop=request.crop
        )

    def _record(self, job_id: str, image: NormalizedImage, request: BatchRequest) -> JobRecord:
        job_request = JobRequest(
            request.client, request.style, request.fmt, "", request.request_id, mode=request.mode,
            crop=request.crop, callback_url=request.callback_url,
        )  # fmt: skip
        # No upload digest: a batch job answers no later request by its bytes.
        return self.gateway.submitter.new_record(job_id, image, job_request).model_copy(update={"upload_digest": None})

    async def _admit(self, batch: BatchRecord, jobs: list[tuple[JobRecord, bytes]], client: ClientIdentity) -> None:
        admission = self.gateway.admission
        keys, args = admit_batch_call(batch, jobs, admission.limits)
        try:
            admitted = parse_batch_admitted(await self.scripts.admit_batch(keys=keys, args=args))
        except RedisError:
            raise broker_unavailable("storing the batch") from None
        if admitted.outcome == "queue-full":
            raise await admission.queue_full(admitted.count)
        if admitted.outcome == "client-quota":
            raise await admission.client_quota(client, admitted.count)

    async def _send(self, record: JobRecord) -> None:
        try:
            await self.gateway.sender.send(record.id)
        except Exception:
            # The batch is accepted; a job whose message could not be sent ends failed (and counts as ended).
            logger.warning("could not send the task; failing the job", extra={"job_id": record.id}, exc_info=True)
            try:
                pipe = self.gateway.redis.pipeline()
                add_mark_failed(pipe, record, ErrorCode.BROKER_UNAVAILABLE, "The job could not be queued.")
                await pipe.execute()
            except RedisError:
                logger.warning("could not mark the unsent job failed", extra={"job_id": record.id})

    async def describe(self, batch_id: str, client: str) -> Batch | None:
        """The client's batch now (queued jobs with their position), None if unknown, expired or not theirs."""
        if not is_job_id(batch_id):
            return None
        found = await read_batch(self.gateway.redis, batch_id)
        if found is None or found[0].client != client:
            return None
        batch, records = found
        reader = self.gateway.reader
        jobs = [None if r is None else Job.from_record(r, position=await reader.position(r)) for r in records]
        return Batch.build(batch, jobs)

    async def poll_hint(self, batch: Batch) -> int:
        """Seconds until the batch's next job should end (for Retry-After)."""
        positions = [i.job.queue_position for i in batch.jobs if i.job is not None and i.job.queue_position]
        wait_s = await self.gateway.admission.estimate_wait_s(min(positions) - 1 if positions else 0)
        return max(1, min(POLL_HINT_MAX_S, math.ceil(wait_s)))


def not_found(batch_id: str, record_ttl_s: int) -> ApiError:
    detail = f"No batch {batch_id[:64]!r}; batches are forgotten {record_ttl_s} s after their last job ends."
    return ApiError("batch-not-found", detail)
