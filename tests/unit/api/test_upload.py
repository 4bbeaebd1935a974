"""The body limit while streaming, and multipart parsing that never touches a temporary file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.types import Message, Receive, Scope, Send

from api.edge.upload import FORM_OVERHEAD_BYTES, UploadLimitMiddleware, read_upload
from api.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, object]:
        parsed = await read_upload(request, LIMIT)
        return {"size": len(parsed.image), "style": parsed.fields.style, "format": parsed.fields.format}

    app.add_middleware(UploadLimitMiddleware, image_limit=LIMIT)
    return app


async def _post(**kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/upload", **kwargs)  # type: ignore[arg-type]


async def test_multipart_fields_are_parsed() -> None:
    response = await _post(files={"image": ("a.png", b"x" * 1000)}, data={"style": " hayao ", "format": "jpeg"})
    assert response.status_code == 200
    assert response.json() == {"size": 1000, "style": "hayao", "format": "jpeg"}


async def test_image_just_over_the_limit_is_413() -> None:
    response = await _post(files={"image": ("a.png", b"x" * (LIMIT + 1))})
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json()["type"] == "/problems/image-too-large"


async def test_missing_image_part_is_a_validation_error() -> None:
    response = await _post(data={"style": "hayao"}, files={"other": ("a.png", b"x")})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "image"]


async def test_non_multipart_body_is_415() -> None:
    response = await _post(json={"image": "x"})
    assert response.status_code == 415


async def test_broken_multipart_is_400() -> None:
    response = await _post(content=b"garbage", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/malformed-request"


async def test_declared_length_over_the_limit_is_refused_without_reading_the_body() -> None:
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    length = str(LIMIT + FORM_OVERHEAD_BYTES + 1).encode()
    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "headers": [(b"content-length", length), (b"content-type", b"multipart/form-data; boundary=x")],
    }
    await UploadLimitMiddleware(_never_called, image_limit=LIMIT)(scope, receive, send)
    assert reads == 0
    assert sent[0]["status"] == 413


async def _never_called(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the application must not run")


async def test_streamed_body_without_length_is_cut_off_at_the_limit() -> None:
    chunk = b"y" * 8192
    sent_chunks = 0

    async def body():  # type: ignore[no-untyped-def]
        nonlocal sent_chunks
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\n'
        for _ in range(1000):
            sent_chunks += 1
            yield chunk

    response = await _post(content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413
    # Reading stopped right after the limit, far before the 8 MB the client had to offer.
    assert sent_chunks * len(chunk) <= LIMIT + FORM_OVERHEAD_BYTES + 2 * len(chunk)


async def test_large_parts_stay_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Starlette spools file parts over 1 MB to a temporary file; ours must not. Linux makes
    # unnamed temporary files (O_TMPFILE), invisible in a listing: a missing temp dir makes any
    # attempt fail loudly instead.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    big = 4 * 1024 * 1024
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> int:
        return len((await read_upload(request, big)).image)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/upload", files={"image": ("a.png", b"z" * big)})
    assert response.json() == big
    assert list(tmp_path.iterdir()) == []


async def test_the_tripwire_catches_starlettes_default_spooling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> int:
        form = await request.form()
        return len(form)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(FileNotFoundError):
            await client.post("/upload", files={"image": ("a.png", b"z" * 4 * 1024 * 1024)})
