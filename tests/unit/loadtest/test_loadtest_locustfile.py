"""The locustfile, run by locust itself in a subprocess (importing locust here would gevent-patch pytest).

A scripted HTTP server plays the service's contract (503 + Retry-After, polling, 409 before the result), so
the client's manners can be checked exactly: it honours Retry-After, names requests by route, records jobs.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


def run_python(code: str, **env: str) -> str:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_scenario_is_a_user_class() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--list"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    listed = set(done.stdout.split())
    assert {"ClassicUser", "MixedSizesUser", "OverloadUser", "DuplicateUser", "BadInputUser", "SoakUser"} <= listed
    assert {"FloodTenantUser", "SteadyTenantUser"} <= listed
    assert "JobUser" not in listed


def test_helpers_read_retry_after_timestamps_and_cache_hits() -> None:
    code = """
import json, time
from email.utils import formatdate
import loadtest.locustfile as lf

class R:
    def __init__(self, headers): self.headers = headers

print(json.dumps({
    "seconds": lf.retry_after(R({"Retry-After": "3"}), 0.5),
    "date": lf.retry_after(R({"Retry-After": formatdate(time.time() + 60, usegmt=True)}), 0.5),
    "missing": lf.retry_after(R({}), 0.5),
    "server": lf.server_seconds({"created_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:02.5Z"},
                                "created_at", "finished_at"),
    "server_missing": lf.server_seconds({"created_at": "2026-01-01T00:00:00Z"}, "created_at", "finished_at"),
    "dedup_body": lf.is_deduplicated(R({}), {"deduplicated": True}),
    "dedup_header": lf.is_deduplicated(R({"X-Deduplicated": "true"}), {}),
    "fresh": lf.is_deduplicated(R({}), {"deduplicated": False}),
    "steps": lf.parse_steps("1, 2,4,"),
    "shape": hasattr(lf, "StepShape"),
}))
"""
    found = json.loads(run_python(code))
    assert found["seconds"] == 3.0
    assert 55 < found["date"] <= 60
    assert found["missing"] == 0.5
    assert found["server"] == 2.5
    assert found["server_missing"] is None
    assert found["dedup_body"]
    assert found["dedup_header"]
    assert not found["fresh"]
    assert found["steps"] == [1, 2, 4]
    assert not found["shape"]
    stepped = json.loads(run_python("import json, loadtest.locustfile as lf; print(json.dumps(lf.StepShape.steps))",
                                    ANIMEGAN_LOADTEST_STEPS="1,2"))  # fmt: skip
    assert stepped == [1, 2]


class QuotaService:
    """A service with per-client quotas: the first submission of each key is refused with 429 client-quota."""

    def __init__(self) -> None:
        self.log: list[tuple[float, str, str, int, str]] = []  # when, method, path, status, Authorization
        self.refused: set[str] = set()
        self.jobs = 0
        self.lock = threading.Lock()

    def answer(self, method: str, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            if method == "POST":
                if auth not in self.refused:
                    self.refused.add(auth)
                    body = b'{"type": "/problems/client-quota", "status": 429}'
                    return 429, {"Retry-After": "1", "Content-Type": "application/problem+json"}, body
                self.jobs += 1
                body = {"id": f"job{self.jobs}", "status": "queued", "created_at": "2026-01-01T00:00:00Z"}
                return 202, {"Retry-After": "1"}, json.dumps(body).encode()
            if path.endswith("/result"):
                return 200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n" + b"\0" * 64
            record = {"id": path.split("/")[2], "status": "succeeded", "created_at": "2026-01-01T00:00:00Z",
                      "started_at": "2026-01-01T00:00:00.5Z", "finished_at": "2026-01-01T00:00:02Z",
                      "timings": {"queue_s": 0.5, "inference_s": 1.2}}  # fmt: skip
            return 200, {}, json.dumps(record).encode()


def serve(answer: Any, log: list[Any]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one(self, method: str) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            auth = self.headers.get("Authorization", "")
            status, headers, body = answer(method, self.path, auth)
            log.append((time.monotonic(), method, self.path, status, auth))
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
    return server


def test_tenants_send_their_own_keys_honour_429_and_are_told_apart_in_the_records(tmp_path: Path) -> None:
    script = QuotaService()
    server = serve(script.answer, script.log)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url, "-u", "3"]
        command += [
            "-r",
            "3",
            "-t",
            "4s",
            "--stop-timeout",
            "20",
            "--only-summary",
            "FloodTenantUser",
            "SteadyTenantUser",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ANIMEGAN_LOADTEST_OUT": str(tmp_path),
               "ANIMEGAN_LOADTEST_KEY_FLOOD": "k-flood", "ANIMEGAN_LOADTEST_KEY_STEADY": "k-steady"}  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert {entry[4] for entry in script.log} == {"Bearer k-flood", "Bearer k-steady"}
    # After its 429 the steady tenant (one user) waits the Retry-After before submitting again.
    posts = [entry for entry in script.log if entry[1] == "POST" and entry[4] == "Bearer k-steady"]
    assert posts[0][3] == 429
    assert posts[1][0] - posts[0][0] >= 1.0 - 0.05
    with (tmp_path / "jobs.csv").open() as handle:
        jobs = list(csv.DictReader(handle))
    tenants = {row["tenant"] for row in jobs}
    assert tenants == {"flood", "steady"}
    assert {row["scenario"] for row in jobs} == {"tenants"}
    steady = [row for row in jobs if row["tenant"] == "steady"]
    assert len(steady) >= 2  # one user: one job, then the next
    assert steady[0]["shed_429"] == "1"
    assert float(steady[0]["waited_s"]) >= 0.95
    assert steady[0]["service_s"] == "1.5"  # started -> finished, from the job record
    assert all(row["outcome"] == "succeeded" for row in jobs)
    with (tmp_path / "requests.csv").open() as handle:
        requests = list(csv.DictReader(handle))
    refused = [row for row in requests if row["status"] == "429"]
    assert {row["problem"] for row in refused} == {"client-quota"}
    assert {row["tenant"] for row in refused} == {"flood", "steady"}
    assert all(row["retry_after"] == "1" and row["ok"] == "1" for row in refused)


class ScriptedService:
    """The contract's happy path with every 'come back later' answer once: 503, running, 409."""

    def __init__(self) -> None:
        self.log: list[tuple[float, str, str, int, float]] = []  # when, method, path, status, Retry-After
        self.submits = 0
        self.polls: dict[str, int] = {}
        self.results: dict[str, int] = {}
        self.lock = threading.Lock()

    def answer(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            if method == "POST" and path == "/stylize":
                self.submits += 1
                if self.submits == 1:
                    return 503, {"Retry-After": "1"}, b'{"type": "/problems/queue-full"}'
                job = f"job{self.submits}"
                body = {"id": job, "status": "queued", "created_at": "2026-01-01T00:00:00Z"}
                return 202, {"Location": f"/jobs/{job}", "Retry-After": "1"}, json.dumps(body).encode()
            job = path.split("/")[2]
            if path.endswith("/result"):
                self.results[job] = self.results.get(job, 0) + 1
                if self.results[job] == 1:
                    return 409, {"Retry-After": "1"}, b'{"type": "/problems/job-not-ready"}'
                return 200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n" + b"\0" * 64
            self.polls[job] = self.polls.get(job, 0) + 1
            status = "running" if self.polls[job] == 1 else "succeeded"
            record = {"id": job, "status": status, "timings": {"queue_s": 0.1, "inference_s": 0.2},
                    "created_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z"}  # fmt: skip
            return 200, {"Retry-After": "1"} if status == "running" else {}, json.dumps(record).encode()


@pytest.fixture
def service() -> Iterator[tuple[str, ScriptedService]]:
    script = ScriptedService()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status, headers, body = script.answer(method, self.path)
            script.log.append((time.monotonic(), method, self.path, status, float(headers.get("Retry-After", 0))))
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


@pytest.mark.parametrize("selection", [["ClassicUser"], ["-T", "classic"]], ids=["by-class", "by-tag"])
def test_a_user_honours_retry_after_and_names_requests_by_route(
    service: tuple[str, ScriptedService], tmp_path: Path, selection: list[str]
) -> None:
    url, script = service
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url, "-u", "1", "-r", "1"]
    command += ["-t", "4s", "--stop-timeout", "20", "--only-summary", *selection]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANIMEGAN_LOADTEST_OUT": str(tmp_path)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    # One user, one request at a time: after an answer with Retry-After, the next request waits at least that.
    hinted = [(entry, after) for entry, after in zip(script.log, script.log[1:], strict=False) if entry[4]]
    assert {entry[3] for entry, _ in hinted} == {503, 202, 200, 409}
    for (when, *_, wait), (later, *_) in hinted:
        assert later - when >= wait - 0.05
    with (tmp_path / "jobs.csv").open() as handle:
        jobs = list(csv.DictReader(handle))
    assert {job["scenario"] for job in jobs} == {"classic"}
    assert jobs[0]["outcome"] == "succeeded"
    assert jobs[0]["shed_503"] == "1"
    assert jobs[0]["job_id"] == "job2"
    assert (jobs[0]["width"], jobs[0]["height"]) == ("1080", "1920")
    assert float(jobs[0]["latency_s"]) >= 4.0  # the waits after 503, 202, "running" and 409
    assert jobs[0]["server_latency_s"] == "1.0"
    with (tmp_path / "requests.csv").open() as handle:
        names = {(row["method"], row["name"]) for row in csv.DictReader(handle)}
    assert names == {
        ("POST", "/stylize"),
        ("GET", "/jobs/[id]"),
        ("GET", "/jobs/[id]/result"),
        ("JOB", "job 1080x1920"),
    }
