"""A client that drops its upload mid-body, against the production API command (a process of its
own): no traceback in its log, and the request is counted as 499, never as a 5xx."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families


def _requests_by_status(base: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "animegan_http_requests_total" and sample.labels["route"] in ("/stylize", "/batches"):
                status = sample.labels["status"]
                counts[status] = counts.get(status, 0.0) + sample.value
    return counts


def _drop_mid_body(port: int, path: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n".encode()
            + b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
            + b"\xff\xd8\xff\xe0"
            + b"x" * 5000
        )
        time.sleep(0.3)  # the gateway is reading the body now


def test_a_dropped_upload_logs_no_traceback_and_counts_as_499_not_500(
    redis_url: str, spawn_api: Callable[..., Any]
) -> None:
    api = spawn_api(redis_url)
    for path in ("/stylize", "/batches", "/stylize"):
        _drop_mid_body(api.port, path)
    deadline = time.monotonic() + 10
    while _requests_by_status(api.base).get("499", 0) < 3:
        assert time.monotonic() < deadline, _requests_by_status(api.base)
        time.sleep(0.1)
    counts = _requests_by_status(api.base)
    assert counts["499"] == 3
    assert not any(status.startswith("5") and value for status, value in counts.items()), counts
    assert httpx.get(f"{api.base}/healthz", timeout=5).status_code == 200
    log = api.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "closed the connection" in log
