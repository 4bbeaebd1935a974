"""The form of POST /videos, read as it arrives: the clip's bytes are handed on, never held whole.

``StreamedForm.clip_chunks()`` drives a multipart parser over the request body and yields the
``video`` file part's bytes as they come, so whoever consumes them (``api.videos.clip_store``:
chunk keys in Redis, or a multipart upload to the bucket) holds about one chunk at a time. The
small text fields (``style``, ``callback_url``) are kept wherever they appear in the form, and
read once the body has ended. The clip is refused while it streams: past
ANIMEGAN_MAX_VIDEO_BYTES (413 ``video-too-large``, the rest of the body is not read), a second
file part, an empty form or one without a ``video`` part (422), an unparsable body (400).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Final

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from api.problems import ApiError

FIELDS: Final = ("style", "callback_url")
MAX_FIELD_BYTES: Final = 4096
MAX_PARTS: Final = 8
CLIP_PART: Final = "video"


def video_too_large(limit: int) -> ApiError:
    return ApiError("video-too-large", f"The clip is larger than the {limit:,}-byte limit (ANIMEGAN_MAX_VIDEO_BYTES).")


class StreamedForm:
    """One multipart body, parsed as it streams in."""

    def __init__(self, content_type: str, body: AsyncIterator[bytes], *, max_clip_bytes: int) -> None:
        if not content_type.lower().startswith("multipart/form-data"):
            raise ApiError("unsupported-media-type", "Send the clip as multipart/form-data with a file part 'video'.")
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise ApiError("malformed-request", "The multipart body could not be parsed: it names no boundary.")
        self._body = body
        self._limit = max_clip_bytes
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_part_data": self._data,
                "on_part_end": self._end,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
            },
        )
        self.fields: dict[str, str] = {}
        self.clip_bytes = 0
        self.found_clip = False
        self._parts = 0
        self._header = (bytearray(), bytearray())
        self._disposition = b""
        self._name: str | None = None
        self._in_clip = False
        self._text = bytearray()
        self._out: list[bytes] = []

    async def clip_chunks(self) -> AsyncIterator[bytes]:
        """The ``video`` part's bytes as they arrive; the whole body is read by the time it ends."""
        try:
            async for chunk in self._body:
                self._parser.write(chunk)
                for data in self._out:
                    yield data
                self._out.clear()
            self._parser.finalize()
        except MultipartParseError as exc:
            raise ApiError("malformed-request", f"The multipart body could not be parsed: {exc}") from None
        if not self.found_clip:
            detail = "The form needs a file part named 'video'."
            raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["body", "video"], "msg": detail}]})

    def field(self, name: str) -> str | None:
        """A text field, stripped; None when absent or empty."""
        value = self.fields.get(name, "").strip()
        return value or None

    def _begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise ApiError("malformed-request", f"The form has more than {MAX_PARTS} parts.")
        self._disposition, self._name, self._in_clip = b"", None, False
        self._text.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0].extend(data[start:end])

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1].extend(data[start:end])

    def _header_end(self) -> None:
        if bytes(self._header[0]).lower() == b"content-disposition":
            self._disposition = bytes(self._header[1])
        self._header[0].clear()
        self._header[1].clear()

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise ApiError("malformed-request", 'A part\'s Content-Disposition names no "name".')
        self._name = name.decode("utf-8", "replace")
        if b"filename" not in options:
            return
        if self._name != CLIP_PART or self.found_clip:
            detail = "The form carries one file, the part named 'video'."
            raise ApiError("validation-error", detail, extra={"errors": [{"loc": ["body", self._name], "msg": detail}]})
        self.found_clip = self._in_clip = True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_clip:
            self.clip_bytes += end - start
            if self.clip_bytes > self._limit:
                raise video_too_large(self._limit)
            self._out.append(bytes(data[start:end]))
            return
        self._text.extend(data[start:end])
        if len(self._text) > MAX_FIELD_BYTES:
            raise ApiError("malformed-request", f"The field {self._name!r} is over {MAX_FIELD_BYTES} bytes.")

    def _end(self) -> None:
        if not self._in_clip and self._name in FIELDS:
            self.fields[self._name] = self._text.decode("utf-8", "replace")


def form_fields(form: StreamedForm) -> Mapping[str, str | None]:
    return {name: form.field(name) for name in FIELDS}
