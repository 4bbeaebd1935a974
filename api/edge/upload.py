"""Upload handling: the body-size limit while the body streams in, and multipart parsing in memory.

``UploadLimitMiddleware`` refuses a body over the limit before any parser buffers it: at once from
``Content-Length`` (nothing of the body is read), and by counting the chunks otherwise (chunked
transfer, or a client that lies). The limit is ANIMEGAN_MAX_UPLOAD_BYTES for the image plus
``FORM_OVERHEAD_BYTES`` for the multipart framing and the small text fields.

It also bounds the gateway's memory and time per upload: at most ANIMEGAN_MAX_CONCURRENT_UPLOADS
requests with a body are handled at once (the others wait, their bytes left in the socket, and
get 503 ``too-many-uploads`` if no slot frees within ANIMEGAN_UPLOAD_TIMEOUT_S), and a body must
have arrived in full within ANIMEGAN_UPLOAD_TIMEOUT_S of its admission, else 408
``request-timeout`` (a client trickling bytes cannot hold a slot for long).

``read_upload`` parses ``multipart/form-data`` with Starlette's parser but never spools a part to
a temporary file: the body is already capped, so parts stay in memory.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

import anyio
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics
from api.problems import ApiError, problem_response
from api.tenancy.clients import route_path
from telemetry.logs import request_id_var

FORM_OVERHEAD_BYTES = 16 * 1024
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def too_large(limit: int, slug: str = "image-too-large") -> ApiError:
    return ApiError(slug, f"The upload is larger than the {limit:,}-byte limit.")


class UploadLimitMiddleware:
    """Pure ASGI middleware: caps every request body at ``image_limit + FORM_OVERHEAD_BYTES``, bounds
    how many bodies are handled at once and how long one may take to arrive."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        image_limit: int,
        max_concurrent: int = 8,
        timeout_s: float = 60.0,
        path_limits: Mapping[str, int] | None = None,
        path_slugs: Mapping[str, str] | None = None,
        path_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        self.app = app
        self.image_limit = image_limit
        self.body_limit = image_limit + FORM_OVERHEAD_BYTES
        # Routes whose body may carry several images (POST /batches) or a clip (POST /videos): their own
        # limit of file bytes, the problem that refuses more, and the time their body may take.
        self.path_limits = dict(path_limits or {})
        self.path_slugs = dict(path_slugs or {})
        self.path_timeouts = dict(path_timeouts or {})
        self.timeout_s = timeout_s
        self.slots = anyio.Semaphore(max_concurrent)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        image_limit = self.path_limits.get(path, self.image_limit)
        slug = self.path_slugs.get(path, "image-too-large")
        body_limit = image_limit + FORM_OVERHEAD_BYTES
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > body_limit:
            # Answer without reading the body; the server closes the connection afterwards.
            await self._refuse(too_large(image_limit, slug), scope, receive, send)
            return
        with anyio.move_on_after(self.timeout_s) as waiting:
            await self.slots.acquire()
        if waiting.cancelled_caught:
            busy = ApiError(
                "too-many-uploads",
                "Too many uploads are being received right now; retry shortly.",
                headers={"Retry-After": "5"},
            )
            await self._refuse(busy, scope, receive, send)
            return
        try:
            timeout_s = self.path_timeouts.get(path, self.timeout_s)
            guarded = self._guarded(receive, timeout_s, too_large(image_limit, slug), body_limit)
            await self.app(scope, guarded, send)
        finally:
            self.slots.release()

    def _guarded(self, receive: Receive, timeout_s: float, over_limit: ApiError, body_limit: int) -> Receive:
        deadline = anyio.current_time() + timeout_s
        received = 0

        async def guarded_receive() -> Message:
            nonlocal received
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                detail = f"The request body did not arrive within {timeout_s:g} s."
                raise ApiError("request-timeout", detail, headers={"Connection": "close"}) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > body_limit:
                    # Raised into whoever is reading the body; the problem handler answers 413.
                    raise over_limit
            return message

        return guarded_receive

    async def _refuse(self, error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
        metrics.observe_rejection(error.slug)
        response = problem_response(
            error, instance=scope["path"], request_id=request_id_var.get(), extra_headers={"Connection": "close"}
        )
        await response(scope, receive, send)


class _InMemoryMultiPartParser(MultiPartParser):
    # Parts roll over to a temporary file past this size; the body cap keeps them far below.
    spool_max_size = sys.maxsize


@dataclass(frozen=True)
class FormFields:
    """The text fields of a submission form (stripped; None when absent or empty)."""

    style: str | None = None
    format: str | None = None
    mode: str | None = None
    crop: str | None = None
    # Passed on as sent; whoever announces a job's end validates it.
    callback_url: str | None = None


@dataclass(frozen=True)
class Upload:
    image: bytes
    fields: FormFields


async def read_upload(request: Request, image_limit: int) -> Upload:
    """Parse the ``image`` file part and the optional ``style``, ``format``, ``mode``, ``crop`` and
    ``callback_url`` fields (text, stripped; empty means absent)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError("unsupported-media-type", "Send the image as multipart/form-data with a file part 'image'.")
    parser = _InMemoryMultiPartParser(request.headers, request.stream(), max_files=1, max_fields=8, max_part_size=4096)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _unparsable(exc) from None
    image = form.get("image")
    if not isinstance(image, UploadFile):
        detail = "The form needs a file part named 'image'."
        raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["body", "image"], "msg": detail}]})
    data = await image.read()
    await form.close()
    if len(data) > image_limit:
        raise too_large(image_limit)
    return Upload(data, _fields(form))


@dataclass(frozen=True)
class UploadedFile:
    filename: str | None
    data: bytes
    # False for an ``image`` part sent without a filename (a text field): judged as a refused entry.
    is_file: bool = True


@dataclass(frozen=True)
class BatchUpload:
    """The ``image`` parts in order (each judged later, on its own) and the fields that apply to all."""

    files: list[UploadedFile]
    fields: FormFields


async def read_batch_upload(request: Request, max_files: int) -> BatchUpload:
    """Parse up to ``max_files`` ``image`` file parts and the fields of ``read_upload``. A part over the
    size limit, or an ``image`` part without a filename, is not refused here: the batch use case
    judges every file on its own."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError("unsupported-media-type", "Send the images as multipart/form-data with file parts 'image'.")
    parser = _InMemoryMultiPartParser(
        request.headers, request.stream(), max_files=max_files, max_fields=8, max_part_size=4096
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            detail = f"A batch carries at most {max_files} images (ANIMEGAN_MAX_BATCH_FILES)."
            raise ApiError("too-many-files", detail, extra={"max_files": max_files}) from None
        raise _unparsable(exc) from None
    files = []
    for part in form.getlist("image"):
        if isinstance(part, UploadFile):
            files.append(UploadedFile(part.filename, await part.read()))
            await part.close()  # its in-memory spool goes now, not once every part was copied
        else:  # no filename: Starlette reads the part as text; refused as an entry, never dropped
            files.append(UploadedFile(None, part.encode(), is_file=False))
    await form.close()
    if not files:
        detail = "The form needs at least one file part named 'image'."
        raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["body", "image"], "msg": detail}]})
    return BatchUpload(files, _fields(form))


def _unparsable(exc: MultiPartException) -> ApiError:
    detail = f"The multipart body could not be parsed: {exc.message}"
    if exc.message.startswith("Part exceeded maximum size"):
        # Starlette reads a part without a filename as a text field, and caps those.
        detail += " A part without a filename is a text field: send each image as a file part with a filename."
    return ApiError("malformed-request", detail)


def _fields(form: FormData) -> FormFields:
    return FormFields(
        style=_text_field(form.get("style")),
        format=_text_field(form.get("format")),
        mode=_text_field(form.get("mode")),
        crop=_text_field(form.get("crop")),
        callback_url=_text_field(form.get("callback_url")),
    )


def _text_field(value: str | UploadFile | None) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None
