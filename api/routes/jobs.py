"""POST /stylize, GET /jobs/{job_id}, GET /jobs/{job_id}/result, DELETE /jobs/{job_id}.

Every job belongs to the client that submitted it (``api.clients.client_of``): another client's
job answers 404 exactly like an unknown one.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, NoReturn

import anyio
from fastapi import APIRouter, Header, Request, Response

from api import idempotency, metrics
from api.admission import Admission
from api.callbacks import check_callback_url
from api.clients import ClientIdentity, client_of
from api.config import ApiSettings
from api.deps import AdmissionDep, GatewayDep, JobReaderDep, SettingsDep
from api.gateway import Gateway
from api.job_reader import JobReader
from api.problems import ApiError
from api.schemas import Job
from api.submission import JobRequest, Submission
from api.upload import Upload, read_upload
from imaging.crops import DEFAULT_MODE, MODES, PORTRAIT_SIDE, CropBox, parse_crop
from imaging.errors import CropError
from imaging.formats import CONTENT_TYPES, FILE_EXTENSIONS, OUTPUT_FORMATS, sniff_format
from jobstore.queue import upload_digest
from jobstore.records import JobRecord, JobState

router = APIRouter(tags=["jobs"])

# Poll hints never ask a client to wait longer than this for a status change.
POLL_HINT_MAX_S = 30

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
STYLIZE_BODY: dict[str, Any] = {
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
                        "callback_url": {
                            "type": "string",
                            "format": "uri",
                            "maxLength": 2048,
                            "description": "Where the job's end is POSTed, signed (README: Webhooks).",
                        },
                        "mode": {
                            "type": "string",
                            "enum": list(MODES),
                            "default": DEFAULT_MODE,
                            "description": "scene: the whole photo; portrait: one square at "
                            f"{PORTRAIT_SIDE}x{PORTRAIT_SIDE} (what the face styles were trained on).",
                        },
                        "crop": {
                            "type": "string",
                            "pattern": r"^\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*$",
                            "examples": ["120,40,600,600"],
                            "description": "Portrait mode only: the square x,y,w,h (w = h) in the upright "
                            "original's pixels; default the centre square.",
                        },
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
    openapi_extra=STYLIZE_BODY,
    responses=dict.fromkeys((400, 409, 413, 415, 422, 429, 503), _PROBLEM),
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
        metrics.observe_rejection(exc.slug, client=client_of(request).label)
        raise


async def _accept(request: Request, response: Response, gateway: Gateway, key: str | None) -> Job:
    settings = gateway.settings
    client = client_of(request)
    upload = await read_upload(request, settings.max_upload_bytes)
    style, fmt = choose_output(upload, settings)
    mode, crop = choose_framing(upload)
    callback_url = await check_callback_url(upload.callback_url, settings)
    if upload.image and sniff_format(upload.image) is None:
        raise ApiError("unsupported-media-type", "The upload is not a JPEG, PNG or WebP image (judged by its bytes).")
    # Hashing a few MB releases the GIL: off the event loop it runs beside other requests.
    fingerprint = await anyio.to_thread.run_sync(
        upload_digest, upload.image, style, fmt, settings.max_side, mode, None if crop is None else str(crop)
    )
    if key is not None:
        earlier = await idempotency.lookup(gateway.redis, client.id, idempotency.check_key(key), fingerprint)
        if earlier is not None:
            return await _replay(response, gateway, earlier, client)
    job_request = JobRequest(
        client,
        style,
        fmt,
        fingerprint,
        getattr(request.state, "request_id", None),
        idempotency_key=key,
        mode=mode,
        crop=crop,
        callback_url=callback_url,
    )
    submission = await _submit(gateway, upload.image, job_request)
    if submission.replayed:
        return await _replay(response, gateway, submission.record.id, client)
    metrics.observe_submitted(len(upload.image), deduplicated=submission.deduplicated)
    if submission.deduplicated:
        response.headers["X-Deduplicated"] = "true"
    return await _describe(
        response, gateway.reader, gateway.admission, submission.record, deduplicated=submission.deduplicated
    )


async def _submit(gateway: Gateway, data: bytes, job_request: JobRequest) -> Submission:
    """A repeated upload is answered before decoding; a full queue or quota refuses before decoding."""
    if job_request.idempotency_key is None and job_request.callback_url is None:
        existing = await gateway.dedup.find_existing(job_request.client.id, job_request.upload_digest)
        if existing is not None:
            return Submission(existing, deduplicated=True)
    await gateway.store_budget.check(len(data))
    await gateway.admission.precheck(job_request.client)
    image = await gateway.images.normalize(
        data, style=job_request.style, fmt=job_request.fmt, mode=job_request.mode, crop=job_request.crop
    )
    return await gateway.submitter.submit(image, job_request)


def choose_output(upload: Upload, settings: ApiSettings) -> tuple[str, str]:
    style = upload.style or settings.default_style
    fmt = (upload.format or settings.default_format).lower()
    if style not in settings.styles:
        _invalid("style", f"Unknown style {style[:64]!r}; available: {', '.join(settings.styles)}.")
    if fmt not in OUTPUT_FORMATS:
        _invalid("format", f"Unknown format {fmt[:16]!r}; choose one of {', '.join(OUTPUT_FORMATS)}.")
    return style, fmt


def choose_framing(upload: Upload) -> tuple[str, CropBox | None]:
    """The mode, and the portrait box when one was sent (whether it fits is known once decoded)."""
    mode = (upload.mode or DEFAULT_MODE).lower()
    if mode not in MODES:
        _invalid("mode", f"Unknown mode {mode[:16]!r}; choose one of {', '.join(MODES)}.")
    if upload.crop is None:
        return mode, None
    if mode != "portrait":
        _invalid("crop", "A crop box applies to portrait mode only; send mode=portrait with it.")
    try:
        return mode, parse_crop(upload.crop)
    except CropError as exc:
        _invalid("crop", str(exc))


def _invalid(field: str, detail: str) -> NoReturn:
    raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["body", field], "msg": detail}]})


async def _replay(response: Response, gateway: Gateway, job_id: str, client: ClientIdentity) -> Job:
    record = await gateway.reader.read(job_id, client.id)
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
    job_id: str,
    request: Request,
    response: Response,
    reader: JobReaderDep,
    admission: AdmissionDep,
    settings: SettingsDep,
) -> Job:
    """Status of a job: queued, running, succeeded or failed."""
    record = await reader.read(job_id, client_of(request).id)
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
    job_id: str, request: Request, reader: JobReaderDep, admission: AdmissionDep, settings: SettingsDep
) -> Response:
    """The stylized image once the job succeeded; 409 with Retry-After before that."""
    record = await reader.read(job_id, client_of(request).id)
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


@router.delete("/jobs/{job_id}", status_code=204, response_class=Response, responses={404: _PROBLEM, 409: _PROBLEM})
async def delete_job(job_id: str, request: Request, gateway: GatewayDep) -> Response:
    """Forget a job now: a finished job's result and record, or a queued job (cancelled).

    Frees the store's memory before the result TTL. A job a worker is computing answers 409 with
    Retry-After (delete it once it ends).
    """
    record = await gateway.reader.read(job_id, client_of(request).id)
    if record is None:
        raise _not_found(job_id, gateway.settings.record_ttl_s)
    running = await gateway.submitter.delete(record)
    if running is not None:
        hint = await _poll_hint(gateway.admission, running, None)
        raise ApiError(
            "job-running", f"A worker is running the job; retry in {hint} s.", headers={"Retry-After": str(hint)}
        )
    return Response(status_code=204)
