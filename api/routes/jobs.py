"""POST /stylize, GET /jobs/{job_id}, GET /jobs/{job_id}/result."""

from __future__ import annotations

import math
from typing import Annotated, Any, NoReturn

import anyio
from fastapi import APIRouter, Header, Request, Response

from api import idempotency, metrics
from api.admission import Admission
from api.config import ApiSettings
from api.deps import AdmissionDep, GatewayDep, JobReaderDep, SettingsDep
from api.gateway import Gateway
from api.job_reader import JobReader
from api.problems import ApiError
from api.schemas import Job
from api.submission import Submission
from api.upload import Upload, read_upload
from inference.imageio import CONTENT_TYPES, FILE_EXTENSIONS, OUTPUT_FORMATS, sniff_format
from jobstore.fingerprints import upload_digest
from jobstore.records import JobRecord
from jobstore.states import JobState

router = APIRouter(tags=["jobs"])

# Poll hints never ask a client to wait longer than this for a status change.
POLL_HINT_MAX_S = 30

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_STYLIZE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP."},
                        "style": {"type": "string", "description": "A name from GET /styles."},
                        "format": {"type": "string", "enum": list(OUTPUT_FORMATS)},
                    },
                }
            }
        },
    }
}


@router.post(
    "/stylize",
    status_code=202,
    response_model=Job,
    openapi_extra=_STYLIZE_BODY,
    responses=dict.fromkeys((400, 409, 413, 415, 422, 503), _PROBLEM),
)
async def create_job(
    request: Request,
    response: Response,
    gateway: GatewayDep,
    idempotency_key: Annotated[str | None, Header(alias=idempotency.HEADER)] = None,
) -> Job:
    """Submit a photo; answers 202 with the job and its status URL."""
    try:
        return await _accept(request, response, gateway, idempotency_key)
    except ApiError as exc:
        metrics.observe_rejection(exc.slug)
        raise


async def _accept(request: Request, response: Response, gateway: Gateway, key: str | None) -> Job:
    settings = gateway.settings
    upload = await read_upload(request, settings.max_upload_bytes)
    style, fmt = _choose(upload, settings)
    if upload.image and sniff_format(upload.image) is None:
        raise ApiError("unsupported-media-type", "The upload is not a JPEG, PNG or WebP image (judged by its bytes).")
    # Hashing a few MB releases the GIL: off the event loop it runs beside other requests.
    fingerprint = await anyio.to_thread.run_sync(upload_digest, upload.image, style, fmt, settings.max_side)
    if key is not None:
        earlier = await idempotency.lookup(gateway.redis, idempotency.check_key(key), fingerprint)
        if earlier is not None:
            return await _replay(response, gateway, earlier)
    submission = await _submit(
        gateway, upload.image, style, fmt, fingerprint, getattr(request.state, "request_id", None)
    )
    if key is not None:
        other = await idempotency.claim(gateway.redis, key, fingerprint, submission.record.id, settings.record_ttl_s)
        if other is not None and other != submission.record.id:
            return await _replay(response, gateway, other)
    metrics.observe_submitted(len(upload.image), deduplicated=submission.deduplicated)
    if submission.deduplicated:
        response.headers["X-Deduplicated"] = "true"
    return await _describe(
        response, gateway.reader, gateway.admission, submission.record, deduplicated=submission.deduplicated
    )


async def _submit(
    gateway: Gateway, data: bytes, style: str, fmt: str, fingerprint: str, request_id: str | None
) -> Submission:
    """A repeated upload is answered before decoding; a full queue refuses only new work."""
    existing = await gateway.dedup.find_existing(fingerprint)
    if existing is not None:
        return Submission(existing, deduplicated=True)
    await gateway.store_budget.check(len(data))
    await gateway.admission.check_capacity()
    image = await gateway.images.normalize(data, style=style, fmt=fmt)
    return await gateway.submitter.submit(image, style=style, fmt=fmt, upload_digest=fingerprint, request_id=request_id)


def _choose(upload: Upload, settings: ApiSettings) -> tuple[str, str]:
    style = upload.style or settings.default_style
    fmt = (upload.format or settings.default_format).lower()
    if style not in settings.styles:
        _invalid("style", f"Unknown style {style[:64]!r}; available: {', '.join(settings.styles)}.")
    if fmt not in OUTPUT_FORMATS:
        _invalid("format", f"Unknown format {fmt[:16]!r}; choose one of {', '.join(OUTPUT_FORMATS)}.")
    return style, fmt


def _invalid(field: str, detail: str) -> NoReturn:
    raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["body", field], "msg": detail}]})


async def _replay(response: Response, gateway: Gateway, job_id: str) -> Job:
    record = await gateway.reader.read(job_id)
    if record is None:
        raise ApiError("idempotency-key-in-use", "The first request with this key is still being accepted; retry.")
    response.headers["Idempotent-Replayed"] = "true"
    return await _describe(response, gateway.reader, gateway.admission, record)


async def _describe(
    response: Response, reader: JobReader, admission: Admission, record: JobRecord, *, deduplicated: bool = False
) -> Job:
    position = await reader.position(record)
    response.headers["Location"] = f"/jobs/{record.id}"
    if not record.state.terminal:
        response.headers["Retry-After"] = str(await _poll_hint(admission, record, position))
    return Job.from_record(record, position=position, deduplicated=deduplicated)


async def _poll_hint(admission: Admission, record: JobRecord, position: int | None) -> int:
    jobs_ahead = (position or 1) - 1 if record.state is JobState.QUEUED else 0
    wait_s = await admission.estimate_wait_s(jobs_ahead)
    return max(1, min(POLL_HINT_MAX_S, math.ceil(wait_s)))


def _not_found(job_id: str, settings_ttl: int) -> ApiError:
    return ApiError("job-not-found", f"No job {job_id[:64]!r}; jobs are forgotten {settings_ttl} s after they end.")


@router.get("/jobs/{job_id}", response_model=Job, responses={404: _PROBLEM})
async def read_job(
    job_id: str, response: Response, reader: JobReaderDep, admission: AdmissionDep, settings: SettingsDep
) -> Job:
    """Status of a job: queued, running, succeeded or failed."""
    record = await reader.read(job_id)
    if record is None:
        raise _not_found(job_id, settings.record_ttl_s)
    return await _describe(response, reader, admission, record)


@router.get(
    "/jobs/{job_id}/result",
    response_class=Response,
    responses={
        200: {"content": {t: {} for t in CONTENT_TYPES.values()}, "description": "The stylized image."},
        404: _PROBLEM,
        409: _PROBLEM,
    },
)
async def read_job_result(
    job_id: str, reader: JobReaderDep, admission: AdmissionDep, settings: SettingsDep
) -> Response:
    """The stylized image once the job succeeded; 409 with Retry-After before that."""
    record = await reader.read(job_id)
    if record is None:
        raise _not_found(job_id, settings.record_ttl_s)
    if record.state is JobState.FAILED:
        raise ApiError("job-failed", record.error_detail or "The job failed.")
    if record.state is not JobState.SUCCEEDED:
        hint = await _poll_hint(admission, record, await reader.position(record))
        detail = f"The job is {record.state.value}; retry in {hint} s."
        raise ApiError("job-not-ready", detail, headers={"Retry-After": str(hint)})
    data = await reader.read_result(record.id)
    if data is None:
        raise ApiError("result-expired", f"The result was kept {record.result_ttl_s} s and has expired.")
    filename = f"{record.id}{FILE_EXTENSIONS[record.format]}"
    headers = {"Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "private, max-age=300"}
    return Response(content=data, media_type=CONTENT_TYPES[record.format], headers=headers)
