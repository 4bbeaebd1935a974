"""POST /stylize, GET /jobs/{job_id}, GET /jobs/{job_id}/result, DELETE /jobs/{job_id}.

A result in the object store is streamed from it in chunks (bounded memory, whatever its size), or
with ANIMEGAN_RESULT_REDIRECT answered 303 to its presigned link; DELETE deletes its objects too.
A video's job (``POST /videos``, ``api.videos``) is read, followed and deleted here like a photo's;
its MP4 in Redis is streamed from its chunks, byte ranges answered (``api.jobs.video_result``).

Each route maps HTTP to a use case and its outcome back to HTTP: the submission's policy is
``api.jobs.submit.submit_job``'s. Every job belongs to the client that submitted it
(``api.tenancy.clients.client_of``): another client's job answers 404 exactly like an unknown one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from api import metrics
from api.deps import ObjectsDep, SettingsDep, StoreDep
from api.edge.upload import read_upload
from api.jobs import idempotency
from api.jobs.deps import AdmissionDep, IntakeDep, JobReaderDep
from api.jobs.describe import Described, describe, poll_hint
from api.jobs.forget import forget_job
from api.jobs.reader import JobReader, job_not_found
from api.jobs.request import STYLIZE_BODY, read_job_request
from api.jobs.submit import submit_job
from api.jobs.video_result import video_result
from api.problems import PROBLEM_RESPONSE, ApiError, store_unavailable
from api.tenancy.clients import client_of
from imaging.formats import CONTENT_TYPES, FILE_EXTENSIONS
from jobstore.blobs import in_object_store, result_link
from jobstore.job_view import Job
from jobstore.records import JobKind, JobRecord, JobState
from jobstore.video_blobs import MP4_TYPE
from jobstore.video_view import AnyJob, VideoJob

router = APIRouter(tags=["jobs"])


@router.post(
    "/stylize",
    status_code=202,
    response_model=Job,
    openapi_extra=STYLIZE_BODY,
    responses=dict.fromkeys((400, 409, 413, 415, 422, 429, 503), PROBLEM_RESPONSE),
)
async def create_job(
    request: Request,
    response: Response,
    settings: SettingsDep,
    intake: IntakeDep,
    idempotency_key: Annotated[str | None, Header(alias=idempotency.HEADER)] = None,
) -> Job | VideoJob:
    """Submit a photo; answers 202 with the job and its status URL."""
    client = client_of(request)
    try:
        upload = await read_upload(request, settings.max_upload_bytes)
        request_id = getattr(request.state, "request_id", None)
        job_request = await read_job_request(
            upload.fields, settings, client=client, request_id=request_id, idempotency_key=idempotency_key
        )
        submitted = await submit_job(upload.image, job_request, intake)
    except ApiError as exc:
        metrics.observe_rejection(exc.slug, client=client.label)
        raise
    if submitted.answer == "replayed":
        response.headers["Idempotent-Replayed"] = "true"
    elif submitted.answer == "deduplicated":
        response.headers["X-Deduplicated"] = "true"
    return _answer(response, submitted.described)


def _answer(response: Response, described: Described) -> Job | VideoJob:
    response.headers["Location"] = f"/jobs/{described.job.id}"
    if described.poll_hint_s is not None:
        response.headers["Retry-After"] = str(described.poll_hint_s)
    return described.job


@router.get("/jobs/{job_id}", response_model=AnyJob, responses={404: PROBLEM_RESPONSE})
async def read_job(
    job_id: str,
    request: Request,
    response: Response,
    reader: JobReaderDep,
    admission: AdmissionDep,
    settings: SettingsDep,
) -> Job | VideoJob:
    """Status of a job (a photo's or a video's): queued, running, succeeded or failed."""
    record = await reader.read(job_id, client_of(request).id)
    if record is None:
        raise job_not_found(job_id, settings.record_ttl_s)
    return _answer(response, await describe(record, reader, admission))


@router.get(
    "/jobs/{job_id}/result",
    response_class=Response,
    responses={
        200: {
            "content": {t: {} for t in (*CONTENT_TYPES.values(), MP4_TYPE)},
            "description": "The stylized image, or a video's MP4.",
        },
        206: {"content": {MP4_TYPE: {}}, "description": "A byte range of a video's MP4 (Range: bytes=a-b)."},
        303: {"description": "With ANIMEGAN_RESULT_REDIRECT and object storage: the result's presigned URL."},
        404: PROBLEM_RESPONSE,
        409: PROBLEM_RESPONSE,
        416: PROBLEM_RESPONSE,
        503: PROBLEM_RESPONSE,
    },
)
async def read_job_result(
    job_id: str,
    request: Request,
    reader: JobReaderDep,
    admission: AdmissionDep,
    settings: SettingsDep,
    store: StoreDep,
) -> Response:
    """The stylized image (a video's MP4) once the job succeeded; 409 with Retry-After before that."""
    record = await reader.read(job_id, client_of(request).id)
    if record is None:
        raise job_not_found(job_id, settings.record_ttl_s)
    if record.state is JobState.FAILED:
        raise ApiError("job-failed", record.error_detail or "The job failed.")
    if record.state is not JobState.SUCCEEDED:
        hint = await poll_hint(admission, record, await reader.position(record))
        detail = f"The job is {record.state.value}; retry in {hint} s."
        raise ApiError("job-not-ready", detail, headers={"Retry-After": str(hint)})
    video = record.job_kind is JobKind.VIDEO
    filename = f"{record.id}{'.mp4' if video else FILE_EXTENSIONS[record.format]}"
    headers = {"Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "private, max-age=300"}
    if in_object_store(record):
        return await _from_store(record, reader, settings.result_redirect, headers)
    if video:
        return await video_result(record, request.headers.get("range"), store, headers)
    data = await reader.read_result(record.id)
    if data is None:
        raise _expired(record)
    return Response(content=data, media_type=CONTENT_TYPES[record.format], headers=headers)


async def _from_store(record: JobRecord, reader: JobReader, redirect: bool, headers: dict[str, str]) -> Response:
    """The result in the object store: a 303 to its presigned link, or its bytes streamed chunk by chunk."""
    if reader.objects is None:
        raise store_unavailable("this gateway has no ANIMEGAN_S3_BUCKET")
    if redirect:
        link = result_link(reader.objects, record, reader.url_ttl_s)
        if link is None:
            raise _expired(record)
        return RedirectResponse(link.url, status_code=303, headers={"Cache-Control": "no-store"})
    download = await reader.open_result(record)
    if download is None:
        raise _expired(record)
    headers["Content-Length"] = str(download.size)
    media_type = MP4_TYPE if record.job_kind is JobKind.VIDEO else CONTENT_TYPES[record.format]
    return StreamingResponse(download.chunks, media_type=media_type, headers=headers)


def _expired(record: JobRecord) -> ApiError:
    return ApiError("result-expired", f"The result was kept {record.result_ttl_s} s and has expired.")


@router.delete(
    "/jobs/{job_id}", status_code=204, response_class=Response, responses={404: PROBLEM_RESPONSE, 409: PROBLEM_RESPONSE}
)
async def delete_job(
    job_id: str,
    request: Request,
    reader: JobReaderDep,
    admission: AdmissionDep,
    store: StoreDep,
    settings: SettingsDep,
    objects: ObjectsDep,
) -> Response:
    """Forget a job now: a finished job's result and record, or a queued job (cancelled).

    Frees the store's memory before the result TTL; objects in the object store are deleted too. A job
    a worker is computing answers 409 with Retry-After (delete it once it ends).
    """
    record = await reader.read(job_id, client_of(request).id)
    if record is None:
        raise job_not_found(job_id, settings.record_ttl_s)
    running = await forget_job(store, record, objects)
    if running is not None:
        hint = await poll_hint(admission, running, None)
        raise ApiError(
            "job-running", f"A worker is running the job; retry in {hint} s.", headers={"Retry-After": str(hint)}
        )
    return Response(status_code=204)
