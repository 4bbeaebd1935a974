"""Upload handling: the body-size limit while the body streams in, and multipart parsing in memory.

``UploadLimitMiddleware`` refuses a body over the limit before any parser buffers it: at once from
``Content-Length`` (nothing of the body is read), and by counting the chunks otherwise (chunked
transfer, or a client that lies). The limit is ANIMEGAN_MAX_UPLOAD_BYTES for the image plus
``FORM_OVERHEAD_BYTES`` for the multipart framing and the small text fields.

``read_upload`` parses ``multipart/form-data`` with Starlette's parser but never spools a part to
a temporary file: the body is already capped, so parts stay in memory.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.log import request_id_var
from api.problems import ApiError, problem_response

FORM_OVERHEAD_BYTES = 16 * 1024
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def too_large(limit: int) -> ApiError:
    return ApiError("image-too-large", f"The upload is larger than the {limit:,}-byte limit.")


class UploadLimitMiddleware:
    """Pure ASGI middleware capping every request body at ``image_limit + FORM_OVERHEAD_BYTES``."""

    def __init__(self, app: ASGIApp, *, image_limit: int) -> None:
        self.app = app
        self.image_limit = image_limit
        self.body_limit = image_limit + FORM_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.body_limit:
            # Answer without reading the body; the server closes the connection afterwards.
            response = problem_response(
                too_large(self.image_limit),
                instance=scope["path"],
                request_id=request_id_var.get(),
                extra_headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.body_limit:
                    # Raised into whoever is reading the body; the problem handler answers 413.
                    raise too_large(self.image_limit)
            return message

        await self.app(scope, counting_receive, send)


class _InMemoryMultiPartParser(MultiPartParser):
    # Parts roll over to a temporary file past this size; the body cap keeps them far below.
    spool_max_size = sys.maxsize


@dataclass(frozen=True)
class Upload:
    image: bytes
    style: str | None
    format: str | None


async def read_upload(request: Request, image_limit: int) -> Upload:
    """Parse the ``image`` file part and the optional ``style`` and ``format`` fields."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError("unsupported-media-type", "Send the image as multipart/form-data with a file part 'image'.")
    parser = _InMemoryMultiPartParser(request.headers, request.stream(), max_files=1, max_fields=8, max_part_size=4096)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError("malformed-request", f"The multipart body could not be parsed: {exc.message}") from None
    image = form.get("image")
    if not isinstance(image, UploadFile):
        detail = "The form needs a file part named 'image'."
        raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["body", "image"], "msg": detail}]})
    data = await image.read()
    await form.close()
    if len(data) > image_limit:
        raise too_large(image_limit)
    return Upload(image=data, style=_text_field(form.get("style")), format=_text_field(form.get("format")))


def _text_field(value: str | UploadFile | None) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None
