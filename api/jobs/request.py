"""One request's options, from the form to the job record: ``JobRequest``.

What a client asks for besides the image (style, format, mode, crop box, callback URL) and who
asks (client, request id, Idempotency-Key) travel together as one ``JobRequest``: read from the
form by ``read_job_request``, used by the decode (framing, the pixels' digest) and turned into the
stored ``JobRecord`` by ``new_record``. POST /stylize makes one per upload; POST /batches one for
all of its files. The form's fields are judged in a fixed order (style, format, mode, crop,
callback URL): the first bad one is the answer. ``STYLIZE_BODY`` describes the form in the API
document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from api.config import ApiSettings
from api.edge.images import NormalizedImage
from api.edge.upload import FormFields
from api.jobs.callbacks import check_callback_url
from api.problems import ApiError
from api.tenancy.clients import ClientIdentity
from imaging.crops import DEFAULT_MODE, MODES, PORTRAIT_SIDE, CropBox, parse_crop
from imaging.errors import CropError
from imaging.formats import OUTPUT_FORMATS
from jobstore.blobs import OBJECT_STORE
from jobstore.records import JobRecord, JobState, now

# The form in the API document (FastAPI cannot describe a body the route parses itself).
STYLIZE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "JPEG, PNG, WebP or HEIC/HEIF."},
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


@dataclass(frozen=True)
class JobRequest:
    """A submission's options and its asker, the same for every file of a batch."""

    client: ClientIdentity
    style: str
    format: str
    mode: str = DEFAULT_MODE
    crop: CropBox | None = None  # the portrait box; None for the centre square (or scene mode)
    callback_url: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None  # as sent; the submission checks it (POST /stylize only)


async def read_job_request(
    fields: FormFields,
    settings: ApiSettings,
    *,
    client: ClientIdentity,
    request_id: str | None,
    idempotency_key: str | None = None,
) -> JobRequest:
    """The request the form asks for, or the 422 problem naming the first bad field."""
    style = fields.style or settings.default_style
    fmt = (fields.format or settings.default_format).lower()
    if style not in settings.styles:
        _invalid("style", f"Unknown style {style[:64]!r}; available: {', '.join(settings.styles)}.")
    if fmt not in OUTPUT_FORMATS:
        _invalid("format", f"Unknown format {fmt[:16]!r}; choose one of {', '.join(OUTPUT_FORMATS)}.")
    mode, crop = _framing(fields)
    return JobRequest(
        client=client,
        style=style,
        format=fmt,
        mode=mode,
        crop=crop,
        callback_url=await check_callback_url(fields.callback_url, settings),
        request_id=request_id,
        idempotency_key=idempotency_key,
    )


def _framing(fields: FormFields) -> tuple[str, CropBox | None]:
    """The mode, and the portrait box when one was sent (whether it fits is known once decoded)."""
    mode = (fields.mode or DEFAULT_MODE).lower()
    if mode not in MODES:
        _invalid("mode", f"Unknown mode {mode[:16]!r}; choose one of {', '.join(MODES)}.")
    if fields.crop is None:
        return mode, None
    if mode != "portrait":
        _invalid("crop", "A crop box applies to portrait mode only; send mode=portrait with it.")
    try:
        return mode, parse_crop(fields.crop)
    except CropError as exc:
        _invalid("crop", str(exc))


def _invalid(field: str, detail: str) -> NoReturn:
    raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["body", field], "msg": detail}]})


def new_record(
    job_id: str, request: JobRequest, image: NormalizedImage, settings: ApiSettings, *, upload_digest: str | None
) -> JobRecord:
    """The queued record of a new job, with this gateway's TTLs (``upload_digest``: None for a batch's job,
    which no later upload is answered by)."""
    return JobRecord(
        id=job_id,
        state=JobState.QUEUED,
        style=request.style,
        format=request.format,
        digest=image.digest,
        upload_digest=upload_digest,
        created_at=now(),
        width=image.width,
        height=image.height,
        original_width=image.original_width,
        original_height=image.original_height,
        input_ttl_s=settings.input_ttl_s,
        result_ttl_s=settings.result_ttl_s,
        record_ttl_s=settings.record_ttl_s,
        request_id=request.request_id,
        client=request.client.id,
        mode=request.mode,
        crop=None if request.crop is None else str(request.crop),
        callback_url=request.callback_url,
        blobs=OBJECT_STORE if settings.object_store_enabled else None,
    )
