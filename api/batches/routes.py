"""POST /batches, GET /batches/{id}, GET /batches/{id}/results.zip.

A batch is up to ANIMEGAN_MAX_BATCH_FILES images with one set of options; its policy is
``api.batches.submit.submit_batch``'s. Its body lists every file in order, with its job (the body
of GET /jobs/{id}) or the problem that kept it out, and counts per state. Like a job, a batch is
visible to the client that created it only. ``results.zip`` holds the results that succeeded so
far, built while sent (``api.batches.archive``); ``X-Animegan-Pending`` counts the jobs still
queued or running, whose results a later download will add. Following a batch live is
``api.events.batch_stream``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from api import metrics
from api.batches.archive import ZipMember, stream_zip
from api.batches.names import zip_names
from api.batches.reader import BatchReaderDep
from api.batches.submit import submit_batch
from api.deps import SettingsDep
from api.edge.upload import read_batch_upload
from api.jobs.deps import IntakeDep, JobReaderDep
from api.jobs.request import STYLIZE_BODY, read_job_request
from api.problems import PROBLEM_RESPONSE, ApiError
from api.tenancy.clients import client_of
from imaging.formats import FILE_EXTENSIONS
from jobstore.batch_view import Batch
from jobstore.records import JobState

router = APIRouter(tags=["batches"])


def _batch_body() -> dict[str, Any]:
    schema = dict(STYLIZE_BODY["requestBody"]["content"]["multipart/form-data"]["schema"])
    properties = dict(schema["properties"])
    properties["image"] = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "1 to ANIMEGAN_MAX_BATCH_FILES JPEG, PNG, WebP or HEIC files, each judged on its own.",
    }
    schema["properties"] = properties
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


@router.post(
    "/batches",
    status_code=202,
    response_model=Batch,
    openapi_extra=_batch_body(),
    responses=dict.fromkeys((400, 413, 415, 422, 429, 503), PROBLEM_RESPONSE),
)
async def create_batch(
    request: Request, response: Response, settings: SettingsDep, intake: IntakeDep, batches: BatchReaderDep
) -> Batch:
    """Submit several photos with the same options; answers 202 with the batch and its status URL."""
    client = client_of(request)
    try:
        upload = await read_batch_upload(request, settings.max_batch_files)
        request_id = getattr(request.state, "request_id", None)
        job_request = await read_job_request(upload.fields, settings, client=client, request_id=request_id)
        batch = await submit_batch(upload.files, job_request, intake, batches)
    except ApiError as exc:
        metrics.observe_rejection(exc.slug, client=client.label)
        raise
    response.headers["Location"] = batch.links.status
    response.headers["Retry-After"] = str(await batches.poll_hint(batch))
    return batch


@router.get("/batches/{batch_id}", response_model=Batch, responses={404: PROBLEM_RESPONSE})
async def read_batch(batch_id: str, request: Request, response: Response, batches: BatchReaderDep) -> Batch:
    """Status of a batch: counts per state and each file's job (or problem)."""
    batch = await batches.read(batch_id, client_of(request).id)
    if batch.status != "completed":
        response.headers["Retry-After"] = str(await batches.poll_hint(batch))
    return batch


@router.get(
    "/batches/{batch_id}/results.zip",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The results that succeeded so far."},
        404: PROBLEM_RESPONSE,
        409: PROBLEM_RESPONSE,
    },
)
async def read_batch_results(
    batch_id: str, request: Request, batches: BatchReaderDep, reader: JobReaderDep
) -> StreamingResponse:
    """A zip of the batch's succeeded results, named after the uploads; 409 while none has succeeded."""
    batch = await batches.read(batch_id, client_of(request).id)
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
    return StreamingResponse(stream_zip(members, reader.read_result), media_type="application/zip", headers=headers)
