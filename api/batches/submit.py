"""Submitting a batch (POST /batches): ``submit_batch`` owns the policy, the route maps its outcome to HTTP.

The steps, in this order, on the same parts and the same admission path as one job
(``api.jobs.submit``):

1. precheck: room in the store for every file, the queue depth, the client's quota
   (``Admission.precheck``), before anything is decoded;
2. judge each file on its own (bounded by the decode slots): a bad one (no filename, over the size
   limit, not an image, undecodable, too many pixels) becomes an entry carrying its problem; when
   no file is usable the batch is refused (422 ``batch-rejected``, each file's problem listed);
3. with an object store, write every usable file's input there first (503 ``store-unavailable``,
   ``api.jobs.inputs``); admit the usable files at once, all of them or none (``Admission.admit_batch``:
   503 queue-full, 429 client-quota; refused, the inputs are deleted), then send one message per job
   (a job whose message could not be sent ends failed);
4. describe: the batch as GET /batches/{id} shows it.

Batch jobs are never deduplicated and no later upload is answered by one: each file is a job of its own.
"""

from __future__ import annotations

import anyio

from api import metrics
from api.batches.names import display_name
from api.batches.reader import BatchReader
from api.edge.images import NormalizedImage
from api.edge.upload import UploadedFile, too_large
from api.jobs import inputs
from api.jobs.request import JobRequest, new_record
from api.jobs.submit import Intake
from api.problems import ApiError, problem_document
from imaging.errors import ImageError, UnsupportedFormatError
from imaging.formats import require_allowed_format
from jobstore.batch_view import Batch
from jobstore.batches import BatchEntry, BatchRecord
from jobstore.records import JobRecord, new_job_id, now

Judged = NormalizedImage | dict[str, object]  # the pixels, or the problem that keeps the file out


async def submit_batch(files: list[UploadedFile], request: JobRequest, intake: Intake, batches: BatchReader) -> Batch:
    """Precheck, judge, admit and describe the batch's files; raises ApiError when the whole batch is refused."""
    await intake.admission.precheck(request.client, [len(file.data) for file in files])
    judged = await _judge_all(files, request, intake)
    if not any(isinstance(j, NormalizedImage) for j in judged):
        problems = [
            {"index": i, "filename": display_name(f.filename, i), "problem": j}
            for i, (f, j) in enumerate(zip(files, judged, strict=True))
        ]
        raise ApiError("batch-rejected", "No file of the batch is a usable image.", extra={"jobs": problems})
    batch, jobs = _new_batch(files, judged, request, intake)
    jobs = await _store_inputs(jobs, intake)
    async with inputs.kept_if_created(intake.store, intake.objects, [record for record, _ in jobs]) as created:
        await intake.admission.admit_batch(batch, jobs, request.client)
        created.append(True)
    for record, _ in jobs:
        await intake.sender.send(record)  # the batch is accepted: an unsent job ends failed, and counts as ended
    described = await batches.describe(batch.id, request.client.id)
    assert described is not None  # just written; record TTLs are at least a second
    for item in described.jobs:
        if item.job is not None:
            metrics.observe_submitted(len(files[item.index].data), deduplicated=False)
    return described


def _new_batch(
    files: list[UploadedFile], judged: list[Judged], request: JobRequest, intake: Intake
) -> tuple[BatchRecord, list[tuple[JobRecord, bytes]]]:
    """The batch's record (an entry per file, in order) and its new jobs' records with their inputs."""
    batch_id = new_job_id()
    entries, jobs = [], []
    for index, (file, outcome) in enumerate(zip(files, judged, strict=True)):
        name = display_name(file.filename, index)
        if isinstance(outcome, NormalizedImage):
            record = new_record(new_job_id(), request, outcome, intake.settings, upload_digest=None)
            jobs.append((record, outcome.raw_rgb))
            entries.append(BatchEntry(index, name, job_id=record.id))
        else:
            entries.append(BatchEntry(index, name, problem=outcome))
    batch = BatchRecord(
        id=batch_id,
        client=request.client.id,
        created_at=now(),
        style=request.style,
        format=request.format,
        record_ttl_s=intake.settings.record_ttl_s,
        entries=entries,
        callback_url=request.callback_url,
    )
    return batch, jobs


async def _store_inputs(jobs: list[tuple[JobRecord, bytes]], intake: Intake) -> list[tuple[JobRecord, bytes]]:
    """Each job with what ADMIT_BATCH stores in Redis: its input, or nothing once it is in the object store."""
    if intake.objects is None:
        return jobs
    stored: list[tuple[JobRecord, bytes]] = []
    async with inputs.kept_if_created(intake.store, intake.objects, [record for record, _ in jobs]) as created:
        for record, raw in jobs:
            stored.append((record, await inputs.store(intake.store, intake.objects, record, raw)))
        created.append(True)
    return stored


async def _judge_all(files: list[UploadedFile], request: JobRequest, intake: Intake) -> list[Judged]:
    judged: list[Judged] = [{} for _ in files]

    async def judge(index: int) -> None:
        try:
            judged[index] = await _judge(files[index], index, request, intake)
        except ApiError as exc:
            judged[index] = problem_document(exc)

    # The normaliser's decode slots bound how many files are decoded at once.
    async with anyio.create_task_group() as group:
        for index in range(len(files)):
            group.start_soon(judge, index)
    return judged


async def _judge(file: UploadedFile, index: int, request: JobRequest, intake: Intake) -> NormalizedImage:
    data = file.data
    if not file.is_file:
        detail = f"Part {index + 1} named 'image' has no filename: send every image as a file part."
        raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["body", "image", index], "msg": detail}]})
    limit = intake.settings.max_upload_bytes
    if len(data) > limit:
        raise too_large(limit)
    # Judged by its bytes before it waits for a decode slot, with the answers of POST /stylize.
    try:
        require_allowed_format(data)
    except UnsupportedFormatError as exc:
        raise ApiError("unsupported-media-type", str(exc)) from None
    except ImageError as exc:
        raise ApiError("invalid-image", str(exc)) from None
    return await intake.images.normalize(
        data, style=request.style, fmt=request.format, mode=request.mode, crop=request.crop
    )
