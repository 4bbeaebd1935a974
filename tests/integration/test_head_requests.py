"""HEAD on the gateway's GET routes, over a real socket: GET's status and headers, no body."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx

ApiFactory = Callable[..., str]


def _raw_head(base: str, path: str) -> bytes:
    """Everything the server sends for a HEAD request on a connection it may keep open."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.settimeout(1.0)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return received


def test_get_routes_answer_head_with_their_headers_and_no_body(
    start_api: ApiFactory, redis_url: str, photo: Callable[[], bytes]
) -> None:
    base = start_api(redis_url=redis_url)
    job = httpx.post(f"{base}/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")}, timeout=30).json()["id"]
    with httpx.Client(base_url=base, timeout=10) as client:
        for path in ("/healthz", "/styles", f"/jobs/{job}", "/", "/openapi.json", f"/jobs/{job}/result", "/nope"):
            get, head = client.get(path), client.head(path)
            assert head.status_code == get.status_code, (path, head.status_code)
            assert head.headers["content-type"] == get.headers["content-type"], path
            assert head.headers.get("content-length") == get.headers.get("content-length"), path
            assert head.content == b"", path
        assert client.head(f"/jobs/{job}").status_code == 200
        assert client.head("/stylize").status_code == 405  # a POST route stays POST
    # On the wire: the head of the answer and nothing after it, the connection still usable.
    raw = _raw_head(base, "/styles")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert rest == b""


def test_head_on_an_event_stream_answers_at_once_and_frees_its_slot(
    start_api: ApiFactory, redis_url: str, photo: Callable[[], bytes]
) -> None:
    base = start_api(redis_url=redis_url, max_event_streams_per_client=1)
    job = httpx.post(f"{base}/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")}, timeout=30).json()["id"]
    started = time.monotonic()
    head = httpx.head(f"{base}/jobs/{job}/events", timeout=10)
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 5
    # The one stream slot of this client is free again: a GET stream opens.
    while True:
        with httpx.stream("GET", f"{base}/jobs/{job}/events", timeout=10) as stream:
            if stream.status_code == 200:
                break
        assert time.monotonic() < deadline, "the HEAD request kept its stream slot"
        time.sleep(0.1)
