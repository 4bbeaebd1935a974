"""api.videos.form: the clip's bytes are handed on as they arrive, refused while they stream, fields kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from api.problems import ApiError
from api.videos.form import StreamedForm

BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def _part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class Body:
    """A request body delivered in small chunks, counting how much of it was read."""

    def __init__(self, data: bytes, chunk: int = 1000) -> None:
        self.data, self.chunk, self.read = data, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.read < len(self.data):
            piece = self.data[self.read : self.read + self.chunk]
            self.read += len(piece)
            yield piece


async def _consume(form: StreamedForm) -> list[bytes]:
    return [chunk async for chunk in form.clip_chunks()]


def test_clip_bytes_come_out_as_they_arrive_and_fields_are_kept_wherever_they_are() -> None:
    clip = bytes(range(256)) * 40
    body = Body(_body(_part("style", b" hayao "), _part("video", clip, "c.mp4"), _part("callback_url", b"http://x/")))
    form = StreamedForm(CONTENT_TYPE, body.__aiter__(), max_clip_bytes=1 << 20)
    chunks = asyncio.run(_consume(form))
    assert b"".join(chunks) == clip
    assert len(chunks) > 5  # handed on chunk by chunk, not collected
    assert max(len(c) for c in chunks) <= 1000
    assert (form.field("style"), form.field("callback_url"), form.clip_bytes) == ("hayao", "http://x/", len(clip))


def test_a_clip_over_the_limit_is_refused_while_it_streams() -> None:
    body = Body(_body(_part("video", b"x" * 100_000, "c.mp4")))
    form = StreamedForm(CONTENT_TYPE, body.__aiter__(), max_clip_bytes=10_000)
    with pytest.raises(ApiError) as refused:
        asyncio.run(_consume(form))
    assert refused.value.slug == "video-too-large"
    assert body.read < 20_000  # the rest of the body was never read


@pytest.mark.parametrize(
    ("parts", "slug"),
    [
        ((_part("style", b"hayao"),), "validation-error"),  # no video part
        ((_part("video", b"a", "a.mp4"), _part("video", b"b", "b.mp4")), "validation-error"),  # two files
        ((_part("image", b"a", "a.jpg"),), "validation-error"),  # a file under another name
        ((_part("style", b"x" * 5000),), "malformed-request"),  # a field over 4 KB
    ],
    ids=["no-video", "two-videos", "other-file", "long-field"],
)
def test_forms_that_carry_no_single_clip_are_refused(parts: tuple[bytes, ...], slug: str) -> None:
    form = StreamedForm(CONTENT_TYPE, Body(_body(*parts)).__aiter__(), max_clip_bytes=1 << 20)
    with pytest.raises(ApiError) as refused:
        asyncio.run(_consume(form))
    assert refused.value.slug == slug


def test_a_body_that_is_not_multipart_is_refused_before_it_is_read() -> None:
    body = Body(b"raw bytes")
    with pytest.raises(ApiError) as refused:
        StreamedForm("video/mp4", body.__aiter__(), max_clip_bytes=1 << 20)
    assert refused.value.slug == "unsupported-media-type"
    assert body.read == 0
    with pytest.raises(ApiError) as no_boundary:
        StreamedForm("multipart/form-data", body.__aiter__(), max_clip_bytes=1 << 20)
    assert no_boundary.value.slug == "malformed-request"
