"""The request-head limit (ANIMEGAN_MAX_HEADER_BYTES) in the server each launcher starts, through
real sockets: ``animegan serve``'s API command and ``animegan api`` (the container's command)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from animegan.redis_server import free_port
from animegan.serve import API_PROTOCOL
from api.header_limit import PROTOCOL_PATH

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 16 * 1024


def _ask(port: int, head: bytes, *, timeout_s: float = 10.0) -> bytes:
    """Send ``head`` (a request without body), return what the server answered before closing or idling."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)  # may be refused before all was sent: the answer is waiting then
        sock.settimeout(1.0)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def _request(header_bytes: int, path: str = "/healthz") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * header_bytes}\r\n\r\n".encode()


def _assert_431(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"content-type: application/problem+json" in head.lower()
    assert b'"type":"/problems/headers-too-large"' in body


@pytest.fixture
def production_api(redis_url: str, spawn_api: Callable[..., Any]) -> Any:
    return spawn_api(redis_url, ANIMEGAN_MAX_HEADER_BYTES=str(LIMIT))


def test_serve_api_command_answers_431_past_the_limit_and_serves_heads_under_it(production_api: Any) -> None:
    port = production_api.port
    assert _ask(port, _request(LIMIT // 2)).startswith(b"HTTP/1.1 200 ")
    _assert_431(_ask(port, _request(64 * 1024 * 1024)))
    _assert_431(_ask(port, _request(LIMIT + 100)))
    # Two requests on one connection: the count starts again with each request.
    both = _ask(port, _request(LIMIT // 2) + _request(LIMIT // 2))
    assert both.count(b"HTTP/1.1 200 ") == 2
    metrics = httpx.get(f"{production_api.base}/metrics", timeout=10).text
    assert 'animegan_rejections_total{reason="headers_too_large"} 2.0' in metrics


def test_a_trickled_endless_header_is_cut_at_the_limit_while_others_are_served(production_api: Any) -> None:
    port = production_api.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent, answer = 0, b""
        sock.settimeout(0.05)
        while not answer and sent < 4 * LIMIT:
            try:
                sock.sendall(b"a" * 1024)
                sent += 1024
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        started = time.monotonic()
        assert httpx.get(f"{production_api.base}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 1
        sock.settimeout(5)
        while chunk := sock.recv(65536):
            answer += chunk
    assert sent <= LIMIT + 2048
    _assert_431(answer)


@pytest.fixture
def animegan_api(redis_url: str, service_env: Callable[..., dict[str, str]], tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = service_env(ANIMEGAN_REDIS_URL=redis_url, ANIMEGAN_MAX_HEADER_BYTES=str(LIMIT))
    with (tmp_path / "api.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "animegan", "api", "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "api.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(20)


def test_the_containers_command_animegan_api_answers_431(animegan_api: int) -> None:
    assert _ask(animegan_api, _request(LIMIT // 2)).startswith(b"HTTP/1.1 200 ")
    _assert_431(_ask(animegan_api, _request(64 * 1024 * 1024)))


def test_serve_names_the_protocol_of_the_gateway() -> None:
    assert API_PROTOCOL == PROTOCOL_PATH
