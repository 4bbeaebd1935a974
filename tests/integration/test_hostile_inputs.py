"""Hostile and malformed uploads against the real gateway (uvicorn on a socket, real Redis).

Every entry of the corpus is built in memory and sent as a client would. Each gets either a
correct result (202, the job's input sized as expected) or a 4xx ``application/problem+json``
whose ``type`` and ``status`` agree; never a 5xx. Classes: empty and truncated files, wrong magic
bytes, polyglots and scripts posing as images, formats outside the allow-list, headers declaring
enormous dimensions, compressed bombs in PNG and WebP, PNG text-chunk bombs, unusual modes
(CMYK, 16-bit, palette with transparency, grey with alpha, 1-bit), EXIF rotations, missing and
duplicated form fields, unknown style or format, bodies that are not multipart, bodies over the
limit with and without Content-Length, and a client trickling its body.

The API process test at the end sends the whole corpus to the production API command while a
real worker runs another user's job, and checks that job, the API's health and its memory.
"""

from __future__ import annotations

import io
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import pytest
from PIL import Image

PROBLEM = "application/problem+json"
LIMIT = 5 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Case:
    """One hostile request: ``files``/``content``/``headers`` as httpx takes them, and what must come back."""

    name: str
    status: int
    slug: str | None = None  # None: any problem slug (several answers are right)
    files: Any = None
    content: bytes | Callable[[], Iterator[bytes]] | None = None  # a callable: a fresh chunked body per send
    headers: dict[str, str] = field(default_factory=dict)
    input_size: tuple[int, int, int, int] | None = None  # 202: width, height, original width, height


# -- builders ------------------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _photo(size: tuple[int, int] = (160, 120)) -> Image.Image:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste((200, 40, 40), (10, 10, 40, 30))
    return image


def _jpeg(size: tuple[int, int] = (160, 120)) -> bytes:
    return _encode(_photo(size), "JPEG", quality=90)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, *, idat: bytes, color_type: int = 0, before_idat: list[bytes] | None = None) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr) + b"".join(before_idat or []) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    return PNG_SIGNATURE + body


def _grey_png_bomb(width: int, height: int) -> bytes:
    """A PNG of zeros: a few tens of KB that decode to width x height pixels."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return _png(width, height, idat=data)


def _ztxt(size: int, key: bytes = b"Comment") -> bytes:
    return _chunk(b"zTXt", key + b"\x00\x00" + zlib.compress(b"A" * size, 9))


def _jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(_jpeg())
    sof = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _webp_lossless_declaring(width: int, height: int) -> bytes:
    data = bytearray(_encode(_photo((16, 16)), "WEBP", lossless=True))
    start = data.index(b"VP8L") + 8  # chunk header, then the 0x2f signature byte
    bits = (
        (width - 1) | ((height - 1) << 14) | (int.from_bytes(data[start + 1 : start + 5], "little") & ~((1 << 28) - 1))
    )
    data[start + 1 : start + 5] = bits.to_bytes(4, "little")
    return bytes(data)


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(_photo(), "JPEG", quality=90, exif=exif)


def _file(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg") -> dict[str, Any]:
    return {"image": (name, data, content_type)}


def _trickle(data: bytes, pieces: int = 64) -> Iterator[bytes]:
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        yield data[start : start + step]


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "hostile-boundary") -> bytes:
    lines = []
    for name, filename, payload in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        lines.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + payload + b"\r\n")
    return b"".join(lines) + f"--{boundary}--\r\n".encode()


def corpus() -> list[Case]:
    jpeg = _jpeg()
    png = _encode(_photo(), "PNG")
    over = b"\xff\xd8\xff\xe0" + b"\x00" * (LIMIT + 32 * 1024)
    return [
        # Empty, truncated, wrong magic.
        Case("zero-byte", 422, "invalid-image", files=_file(b"")),
        Case("truncated-jpeg", 422, "invalid-image", files=_file(jpeg[: len(jpeg) // 2])),
        Case("truncated-png", 422, "invalid-image", files=_file(png[: len(png) // 2], "p.png", "image/png")),
        Case("png-signature-only", 415, "unsupported-media-type", files=_file(PNG_SIGNATURE, "p.png", "image/png")),
        Case("jpeg-soi-then-garbage", 422, "invalid-image", files=_file(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)),
        Case("random-bytes", 415, "unsupported-media-type", files=_file(bytes(range(256)) * 16)),
        Case("png-magic-then-html", 415, "unsupported-media-type", files=_file(PNG_SIGNATURE + b"<html>hi</html>")),
        # The client's name and type mean nothing; the bytes decide.
        Case("jpeg-named-png", 202, files=_file(jpeg, "p.png", "image/png"), input_size=(128, 96, 160, 120)),
        Case("png-sent-as-html", 202, files=_file(png, "x.html", "text/html"), input_size=(128, 96, 160, 120)),
        # Polyglots and scripts posing as images.
        Case("gif-html-polyglot", 415, "unsupported-media-type", files=_file(b"GIF89a/*<script>alert(1)</script>*/")),
        Case(
            "jpeg-with-html-after-eoi",
            202,
            files=_file(jpeg + b"<script>alert(1)</script>"),
            input_size=(128, 96, 160, 120),
        ),
        Case(
            "png-with-php-after-iend",
            202,
            files=_file(png + b"<?php system($_GET[0]); ?>"),
            input_size=(128, 96, 160, 120),
        ),
        Case("html", 415, "unsupported-media-type", files=_file(b"<!DOCTYPE html><html><script>alert(1)</script>")),
        Case(
            "svg-onload",
            415,
            "unsupported-media-type",
            files=_file(b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "x.svg", "image/svg+xml"),
        ),
        Case(
            "svg-xml-declaration",
            415,
            "unsupported-media-type",
            files=_file(b'<?xml version="1.0"?><svg><script>alert(1)</script></svg>'),
        ),
        Case("php", 415, "unsupported-media-type", files=_file(b"<?php system($_GET['c']); ?>")),
        Case("shell-script", 415, "unsupported-media-type", files=_file(b"#!/bin/sh\nrm -rf /\n")),
        Case("pdf", 415, "unsupported-media-type", files=_file(b"%PDF-1.7\n1 0 obj<<>>endobj\n")),
        Case("zip", 415, "unsupported-media-type", files=_file(b"PK\x03\x04" + b"\x00" * 64)),
        # HEIC is accepted: a HEIC box around nothing is a broken HEIC; AVIF (same box) is not accepted.
        Case("heif-box", 422, "invalid-image", files=_file(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)),
        Case("avif-box", 415, "unsupported-media-type", files=_file(b"\x00\x00\x00\x18ftypavif" + b"\x00" * 64)),
        # Real images in formats outside the allow-list.
        *(
            Case(f"format-{fmt.lower()}", 415, "unsupported-media-type", files=_file(_encode(_photo(), fmt)))
            for fmt in ("GIF", "TIFF", "BMP", "ICO", "TGA", "PCX", "PPM", "JPEG2000")
        ),
        # Headers declaring enormous dimensions, and compressed bombs.
        Case(
            "png-header-100000x100000",
            422,
            "too-many-pixels",
            files=_file(_png(100_000, 100_000, idat=zlib.compress(b"\x00" * 64))),
        ),
        Case("jpeg-header-65500x65500", 422, "too-many-pixels", files=_file(_jpeg_declaring(65_500, 65_500))),
        Case("webp-header-16384x16384", 422, None, files=_file(_webp_lossless_declaring(16_384, 16_384))),
        Case("png-bomb-48-megapixels", 422, "too-many-pixels", files=_file(_grey_png_bomb(8000, 6000))),
        Case(
            "webp-bomb-41-megapixels",
            422,
            "too-many-pixels",
            files=_file(_encode(Image.new("RGB", (6400, 6400)), "WEBP", lossless=True, quality=0, method=0)),
        ),
        Case(
            "png-bomb-under-the-limit", 202, files=_file(_grey_png_bomb(6000, 6000)), input_size=(128, 128, 6000, 6000)
        ),
        # PNG text chunks: one over Pillow's per-chunk limit, many over its total.
        Case(
            "png-ztxt-bomb",
            422,
            "invalid-image",
            files=_file(_png(16, 16, idat=zlib.compress(b"\x00" * 17 * 16), before_idat=[_ztxt(2_000_000)])),
        ),
        Case(
            "png-many-ztxt",
            422,
            "invalid-image",
            files=_file(
                _png(
                    16,
                    16,
                    idat=zlib.compress(b"\x00" * 17 * 16),
                    before_idat=[_ztxt(1_000_000, b"k%d" % i) for i in range(70)],
                )
            ),
        ),
        # Unusual modes come out as RGB.
        Case("cmyk-jpeg", 202, files=_file(_encode(_photo().convert("CMYK"), "JPEG")), input_size=(128, 96, 160, 120)),
        Case(
            "16-bit-png",
            202,
            files=_file(_encode(Image.linear_gradient("L").resize((160, 120)).convert("I;16"), "PNG")),
            input_size=(128, 96, 160, 120),
        ),
        Case(
            "palette-png-with-transparency",
            202,
            files=_file(_encode(_photo().quantize(16), "PNG", transparency=0)),
            input_size=(128, 96, 160, 120),
        ),
        Case(
            "grey-alpha-png", 202, files=_file(_encode(_photo().convert("LA"), "PNG")), input_size=(128, 96, 160, 120)
        ),
        Case("1-bit-png", 202, files=_file(_encode(_photo().convert("1"), "PNG")), input_size=(128, 96, 160, 120)),
        Case("rgba-webp", 202, files=_file(_encode(_photo().convert("RGBA"), "WEBP")), input_size=(128, 96, 160, 120)),
        *(
            Case(
                f"exif-orientation-{o}",
                202,
                files=_file(_exif_jpeg(o)),
                input_size=(96, 128, 120, 160) if o >= 5 else (128, 96, 160, 120),
            )
            for o in range(1, 9)
        ),
        # Form fields.
        Case("no-image-field", 422, "validation-error", files={"style": (None, "hayao")}),
        Case("image-as-text-field", 422, "validation-error", files={"image": (None, "not a file")}),
        Case(
            "two-image-files",
            400,
            "malformed-request",
            files=[("image", ("a.jpg", jpeg, "image/jpeg")), ("image", ("b.jpg", jpeg, "image/jpeg"))],
        ),
        Case(
            "duplicated-style",
            422,
            "validation-error",
            files=[("image", ("a.jpg", jpeg, "image/jpeg")), ("style", (None, "hayao")), ("style", (None, "nope"))],
        ),
        Case("unknown-style", 422, "validation-error", files={**_file(jpeg), "style": (None, "../../etc/passwd")}),
        Case("unknown-format", 422, "validation-error", files={**_file(jpeg), "format": (None, "gif")}),
        Case("field-over-part-limit", 400, "malformed-request", files={**_file(jpeg), "style": (None, "x" * 10_000)}),
        Case(
            "too-many-fields",
            400,
            "malformed-request",
            files=[("image", ("a.jpg", jpeg, "image/jpeg")), *((f"f{i}", (None, "v")) for i in range(12))],
        ),
        # A browser sends filename="" for an empty file input: a text field, not a file.
        Case("empty-filename", 422, "validation-error", files={"image": ("", jpeg, "image/jpeg")}),
        # Bodies that are not multipart/form-data.
        Case(
            "json-body",
            415,
            "unsupported-media-type",
            content=b'{"image": "aGVsbG8="}',
            headers={"Content-Type": "application/json"},
        ),
        Case("raw-jpeg-body", 415, "unsupported-media-type", content=jpeg, headers={"Content-Type": "image/jpeg"}),
        Case(
            "urlencoded-body",
            415,
            "unsupported-media-type",
            content=b"image=abc",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        Case("no-content-type", 415, "unsupported-media-type", content=jpeg),
        Case(
            "multipart-without-boundary",
            400,
            "malformed-request",
            content=b"--x\r\n\r\n",
            headers={"Content-Type": "multipart/form-data"},
        ),
        Case(
            "multipart-garbage",
            400,
            "malformed-request",
            content=b"\x00garbage" * 100,
            headers={"Content-Type": "multipart/form-data; boundary=hostile-boundary"},
        ),
        Case(
            "multipart-unterminated",
            422,
            None,
            content=_multipart([("image", "a.jpg", jpeg)])[:-30],
            headers={"Content-Type": "multipart/form-data; boundary=hostile-boundary"},
        ),
        # Over the limit: declared, and streamed without a Content-Length.
        Case("over-limit-with-content-length", 413, "image-too-large", files=_file(over)),
        Case(
            "over-limit-chunked",
            413,
            "image-too-large",
            content=lambda: _trickle(_multipart([("image", "a.jpg", over)])),
            headers={"Content-Type": "multipart/form-data; boundary=hostile-boundary"},
        ),
    ]


CORPUS = corpus()


def _send(base: str, case: Case, client: httpx.Client) -> httpx.Response:
    content = case.content() if callable(case.content) else case.content
    return client.post(f"{base}/stylize", files=case.files, content=content, headers=case.headers)


def _check(case: Case, response: httpx.Response) -> None:
    assert response.status_code < 500, f"{case.name}: {response.status_code} {response.text[:300]}"
    assert response.status_code == case.status, f"{case.name}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM, case.name
        body = response.json()
        assert body["status"] == response.status_code
        if case.slug is not None:
            assert body["type"] == f"/problems/{case.slug}", f"{case.name}: {body}"
        assert "Traceback" not in body["detail"]
    if case.input_size is not None:
        job = response.json()
        size = job["input"]
        assert (size["width"], size["height"], size["original_width"], size["original_height"]) == case.input_size


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_hostile_upload_gets_a_correct_result_or_a_4xx_problem(
    case: Case, start_api: Callable[..., str], redis_url: str
) -> None:
    base = start_api(redis_url=redis_url)
    with httpx.Client(timeout=60) as client:
        _check(case, _send(base, case, client))
        assert client.get(f"{base}/healthz").status_code == 200


def test_a_client_trickling_its_body_gets_408_and_the_server_stays_responsive(
    start_api: Callable[..., str], redis_url: str
) -> None:
    base = start_api(redis_url=redis_url, upload_timeout_s=2, max_concurrent_uploads=1)
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
        head = (
            "POST /stylize HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        slow.sendall(head.encode() + b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n')
        started = time.monotonic()
        answer = b""
        slow.settimeout(0.2)
        while b"\r\n\r\n" not in answer:
            assert time.monotonic() - started < 30, "no answer to a trickling client"
            # The server keeps answering others meanwhile (the one upload slot is held by this client).
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            try:
                slow.sendall(b"x")
                answer += slow.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert PROBLEM.encode() in answer
    # The slot is free again: the next upload is received.
    assert httpx.post(f"{base}/stylize", files=_file(_jpeg())).status_code == 202


def test_uploads_beyond_the_concurrency_limit_wait_then_get_503_not_a_crash(
    start_api: Callable[..., str], redis_url: str
) -> None:
    base = start_api(redis_url=redis_url, upload_timeout_s=1, max_concurrent_uploads=1)
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as holder:
        holder.sendall(
            b"POST /stylize HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        time.sleep(0.3)  # the holder has the only slot now
        busy = httpx.post(f"{base}/stylize", files=_file(_jpeg()), timeout=30)
    assert busy.status_code in (202, 503)  # 202 if the holder's own 408 freed the slot first
    if busy.status_code == 503:
        assert busy.headers["content-type"] == PROBLEM
        assert busy.json()["type"] == "/problems/too-many-uploads"
        assert int(busy.headers["retry-after"]) >= 1


def test_images_of_every_accepted_kind_come_back_stylized(start_api: Callable[..., str], worker_redis_url: str) -> None:
    # One client sends the whole corpus at once: lift its quota of jobs queued or running.
    base = start_api(redis_url=worker_redis_url, max_queued_per_client=len(CORPUS))
    accepted = [c for c in CORPUS if c.status == 202 and c.name != "png-bomb-under-the-limit"]
    with httpx.Client(timeout=60) as client:
        jobs = {c.name: (c, _send(base, c, client).json()["id"]) for c in accepted}
        for name, (case, job_id) in jobs.items():
            deadline = time.monotonic() + 120
            while (job := client.get(f"{base}/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, name
                time.sleep(0.1)
            assert job["status"] == "succeeded", (name, job)
            result = client.get(f"{base}/jobs/{job_id}/result")
            with Image.open(io.BytesIO(result.content)) as out:
                assert out.mode == "RGB"
                assert out.size == case.input_size[:2]  # type: ignore[index]
                assert not out.getexif()  # re-encoded: nothing of the upload's metadata


def test_the_whole_corpus_leaves_the_api_process_small_and_other_jobs_running(
    spawn_api: Callable[..., Any], worker_redis_url: str, photo: Callable[[], bytes]
) -> None:
    api = spawn_api(worker_redis_url)
    with httpx.Client(timeout=60) as client:
        other = client.post(f"{api.base}/stylize", files=_file(photo())).json()["id"]
        process = psutil.Process(api.process.pid)
        before = process.memory_info().rss
        peak = before
        for case in CORPUS:
            _check(case, _send(api.base, case, client))
            peak = max(peak, process.memory_info().rss)
        after = process.memory_info().rss
        deadline = time.monotonic() + 120
        while (job := client.get(f"{api.base}/jobs/{other}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert job["status"] == "succeeded"
        assert client.get(f"{api.base}/readyz").status_code == 200
    mib = {k: round(v / 2**20) for k, v in {"before": before, "peak": peak, "after": after}.items()}
    print(f"\nAPI RSS over the hostile corpus (MiB): {mib}")
    assert peak < before + 400 * 2**20
