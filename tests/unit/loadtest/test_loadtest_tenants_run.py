"""``animegan loadtest tenants --url`` against a scripted service with per-key quotas: the runner's wiring.

The service is a small HTTP server playing the contract (keys, a quota per key with 429 + Retry-After, jobs
that finish 0.3 s after they are created, ``/readyz`` with a worker count, ``/metrics`` behind a key), so
the run takes seconds and starts no worker. What is checked: the keys reach the right places and only
those, and the report judges the tenants.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadtest import runner

KEYS = {"Bearer k-flood": "flood", "Bearer k-steady": "steady"}
QUOTA = 2
JOB_S = 0.3


class TenantService:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, tuple[str, float]] = {}  # id -> (tenant, created)
        self.auth: list[tuple[str, str]] = []  # path, Authorization

    def active(self, tenant: str, now: float) -> int:
        return sum(1 for owner, created in self.jobs.values() if owner == tenant and now - created < JOB_S)

    def answer(self, method: str, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
        now = time.time()
        with self.lock:
            self.auth.append((path, auth))
            if path == "/readyz":
                return 200, {}, json.dumps({"status": "ready", "workers": 2, "queue_depth": 0}).encode()
            if path == "/metrics":
                if auth != "Bearer k-observer":
                    return 401, {}, b"{}"
                return 200, {"Content-Type": "text/plain"}, b"animegan_queue_depth 0.0\n"
            tenant = KEYS.get(auth)
            if tenant is None:
                return 401, {"Content-Type": "application/problem+json"}, b'{"type": "/problems/unauthorized"}'
            if method == "POST":
                if self.active(tenant, now) >= QUOTA:
                    body = b'{"type": "/problems/client-quota"}'
                    return 429, {"Retry-After": "1", "Content-Type": "application/problem+json"}, body
                job = f"job{len(self.jobs) + 1}"
                self.jobs[job] = (tenant, now)
                return 202, {"Retry-After": "1"}, json.dumps({"id": job, "status": "queued"}).encode()
            job = path.split("/")[2]
            created = self.jobs[job][1]
            if now - created < JOB_S:
                return (409 if path.endswith("/result") else 200), {"Retry-After": "1"}, b'{"status": "running"}'
            if path.endswith("/result"):
                return 200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n" + b"\0" * 64
            record = {"id": job, "status": "succeeded", "created_at": created, "started_at": created + 0.05,
                      "finished_at": created + JOB_S, "timings": {"queue_s": 0.05, "inference_s": 0.2}}  # fmt: skip
            return 200, {}, json.dumps(record).encode()


@pytest.fixture
def service() -> Iterator[tuple[str, TenantService]]:
    script = TenantService()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one(self, method: str) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, body = script.answer(method, self.path, self.headers.get("Authorization", ""))
            self.send_response(status)
            headers.setdefault("Content-Type", "application/json")
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.handle_one("POST")

        def do_GET(self) -> None:
            self.handle_one("GET")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()


def test_tenants_against_a_url_sends_each_key_where_it_belongs_and_judges_the_tenants(
    service: tuple[str, TenantService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, script = service
    env = {"ANIMEGAN_LOADTEST_KEY_FLOOD": "k-flood", "ANIMEGAN_LOADTEST_KEY_STEADY": "k-steady",
           "ANIMEGAN_LOADTEST_KEY": "k-observer", "ANIMEGAN_MAX_QUEUED_PER_CLIENT": str(QUOTA)}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = runner.main(["tenants", "--url", url, "--duration", "5s", "--out", str(tmp_path), "--stop-timeout", "20"])
    (folder,) = tmp_path.iterdir()
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text())
    assert code == 0, [check for check in summary["checks"] if not check["ok"]]
    tenants = summary["tenants"]
    assert tenants["workers"] == 2  # from /readyz
    assert tenants["quota"] == QUOTA
    assert tenants["tenants"]["flood"]["problems_429"].get("client-quota", 0) > 0
    assert tenants["tenants"]["steady"]["succeeded"] >= 2
    assert tenants["tenants"]["steady"]["status_429"] == 0
    assert summary["metrics"]["queue_depth_max"] == 0.0  # the sampler's scrapes carried the observer key
    assert {auth for path, auth in script.auth if path == "/metrics"} == {"Bearer k-observer"}
    assert {auth for path, auth in script.auth if path.startswith("/jobs")} == {"Bearer k-flood", "Bearer k-steady"}
    written = "".join(path.read_text(errors="replace") for path in folder.iterdir() if path.suffix in (".md", ".json"))
    assert "## Tenants" in written
    assert not any(key in written for key in ("k-flood", "k-steady", "k-observer"))


def test_tenants_against_a_url_without_both_keys_does_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ANIMEGAN_LOADTEST_KEY_FLOOD", "k-flood")
    monkeypatch.delenv("ANIMEGAN_LOADTEST_KEY_STEADY", raising=False)
    assert runner.main(["tenants", "--url", "http://127.0.0.1:9", "--out", str(tmp_path)]) == 2
    assert "ANIMEGAN_LOADTEST_KEY_STEADY" in caplog.text
    assert not list(tmp_path.iterdir())  # refused before a report folder was made
