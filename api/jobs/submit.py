"""Submitting a photo (POST /stylize): ``submit_job`` owns the policy, the route maps its outcome to HTTP.

The steps, in this order; each may end the submission with a problem or an earlier job:

1. precheck, cheapest first, before anything is decoded:
   - the bytes are JPEG, PNG, WebP or HEIC (415), and their fingerprint is hashed off the event loop;
   - Idempotency-Key: a retry of the same request replays its first job, another request with the
     same key is refused (``api.jobs.idempotency``);
   - dedup: the client's identical upload whose job can still answer is the answer, unless a key or
     a callback URL was sent (``api.jobs.dedup``);
   - the store's memory budget, the queue depth, the client's quota (``Admission.precheck``);
2. decode: orient, frame, downscale and hash the pixels under the decode budget (``api.edge.images``);
3. admit: with an object store the input is written there first (503 ``store-unavailable`` when it
   cannot be, ``api.jobs.inputs``), then the job store's ADMIT script decides again, atomically
   (``Admission.admit_job``); a job this call created gets its task message, an input whose job was
   not created is deleted;
4. describe: the job as GET /jobs/{id} shows it, and its poll hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import anyio
import redis.asyncio

from api import metrics
from api.config import ApiSettings
from api.edge.images import ImageNormalizer
from api.jobs import idempotency, inputs
from api.jobs.admission import Admission
from api.jobs.dedup import Deduplicator
from api.jobs.describe import Described, describe
from api.jobs.reader import JobReader
from api.jobs.request import JobRequest, new_record
from api.jobs.sender import TaskSender
from api.problems import ApiError, broker_unavailable
from imaging.formats import sniff_format
from jobstore.objectstore import ObjectStore
from jobstore.queue import upload_digest
from jobstore.records import JobRecord, new_job_id

Answer = Literal["created", "deduplicated", "replayed"]


@dataclass(frozen=True)
class Intake:
    """The parts a submission uses, one of each per app (``api.deps.get_intake``)."""

    settings: ApiSettings
    store: redis.asyncio.Redis
    reader: JobReader
    dedup: Deduplicator
    admission: Admission
    images: ImageNormalizer
    sender: TaskSender
    objects: ObjectStore | None = None


@dataclass(frozen=True)
class Submitted:
    """The job that answers the submission, and how it came to answer."""

    described: Described
    answer: Answer


async def submit_job(image: bytes, request: JobRequest, intake: Intake) -> Submitted:
    """Precheck, decode, admit and describe one upload; raises ApiError for every refusal."""
    if image and sniff_format(image) is None:
        raise ApiError(
            "unsupported-media-type", "The upload is not a JPEG, PNG, WebP or HEIC image (judged by its bytes)."
        )
    crop = None if request.crop is None else str(request.crop)
    # Hashing a few MB releases the GIL: off the event loop it runs beside other requests.
    fingerprint = await anyio.to_thread.run_sync(
        upload_digest, image, request.style, request.format, intake.settings.max_side, request.mode, crop
    )
    client, key = request.client, request.idempotency_key
    if key is not None:
        earlier = await idempotency.lookup(intake.store, client.id, idempotency.check_key(key), fingerprint)
        if earlier is not None:
            return await _answer(await _earlier(earlier, request, intake), "replayed", len(image), intake)
    if key is None and request.callback_url is None:
        existing = await intake.dedup.find_existing(client.id, fingerprint)
        if existing is not None:
            return await _answer(existing, "deduplicated", len(image), intake)
    await intake.admission.precheck(client, [len(image)])
    normalized = await intake.images.normalize(
        image, style=request.style, fmt=request.format, mode=request.mode, crop=request.crop
    )
    record = new_record(new_job_id(), request, normalized, intake.settings, upload_digest=fingerprint)
    raw = await inputs.store(intake.store, intake.objects, record, normalized.raw_rgb)
    async with inputs.kept_if_created(intake.store, intake.objects, [record]) as created:
        admitted = await intake.admission.admit_job(record, raw, client, key, fingerprint)
        created.append(admitted.outcome == "created")
    if admitted.outcome == "idempotency-key-reused":
        raise idempotency.reused()
    if admitted.outcome in ("replayed", "deduplicated"):  # an identical job was admitted since the precheck
        answer: Answer = "replayed" if admitted.outcome == "replayed" else "deduplicated"
        return await _answer(await _earlier(admitted.job_id, request, intake), answer, len(image), intake)
    if not await intake.sender.send(record):
        raise broker_unavailable("sending the task")
    return await _answer(record, "created", len(image), intake)


async def _earlier(job_id: str, request: JobRequest, intake: Intake) -> JobRecord:
    """The client's job that answers instead of a new one; gone already means its key is still in use."""
    record = await intake.reader.read(job_id, request.client.id)
    if record is None:
        raise idempotency.in_use()
    return record


async def _answer(record: JobRecord, answer: Answer, upload_bytes: int, intake: Intake) -> Submitted:
    """Count the accepted upload (a replay was counted the first time) and describe its job."""
    deduplicated = answer == "deduplicated"
    if answer != "replayed":
        metrics.observe_submitted(upload_bytes, deduplicated=deduplicated)
    described = await describe(record, intake.reader, intake.admission, deduplicated=deduplicated)
    return Submitted(described, answer)
