"""Signed webhooks against the real service: gateway on a socket, real workers, a real receiver.

The receiver is a threaded ``http.server`` on 127.0.0.1 that checks every signature itself (the
receiver recipe of docs/guides/webhooks.md, not the service's code) and records each request. Loopback is only reachable
with ANIMEGAN_WEBHOOK_ALLOW_PRIVATE=true, which the gateway and the workers under test set; the
refusal tests run without it. Backoff delays are shortened so retries happen in seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from animegan.redis_server import free_port
from jobstore.keys import WEBHOOKS_DUE_KEY, input_key, webhook_key

SECRET = "test-webhook-secret-0123456789"
WEBHOOK_ENV = {
    "ANIMEGAN_WEBHOOK_SECRET": SECRET,
    "ANIMEGAN_WEBHOOK_ALLOW_PRIVATE": "true",
    "ANIMEGAN_WEBHOOK_POLL_INTERVAL_S": "0.2",
}
API_WEBHOOKS = {"webhook_secret": SECRET, "webhook_allow_private": True}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int


@dataclass
class Receiver:
    """Answers each path with the statuses scripted for it, in order (then 200), and records requests."""

    port: int = 0
    scripts: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout_s: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.on(path)) >= count:
                return self.on(path)
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.on(path))} requests after {timeout_s} s, expected {count}")

    def answer(self, path: str) -> int:
        with self.lock:
            script = self.scripts.get(path, [])
            return script.pop(0) if script else 200


def verify(headers: dict[str, str], body: bytes, secret: str, tolerance_s: int = 300) -> bool:
    """What a receiver does (docs/guides/webhooks.md): recompute the HMAC of "<t>.<body>", refuse old timestamps."""
    parts = dict(p.split("=", 1) for p in headers.get("animegan-signature", "").split(",") if "=" in p)
    if "t" not in parts or "v1" not in parts or abs(time.time() - int(parts["t"])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = state.answer(self.path)
            with state.lock:
                state.received.append(Received(self.path, headers, body, verify(headers, body, SECRET), status))
            self.send_response(status)
            if status in (301, 302, 307, 308):
                self.send_header("Location", state.url("/followed"))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def submit(base: str, image: bytes, callback_url: str | None) -> httpx.Response:
    data = {"callback_url": callback_url} if callback_url is not None else {}
    return httpx.post(f"{base}/stylize", files={"image": ("photo.jpg", image, "image/jpeg")}, data=data, timeout=30)


def wait_finished(base: str, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def delivery_fields(url: str, delivery_id: str) -> dict[str, str]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        return dict(client.hgetall(webhook_key(delivery_id)))


def webhook_counts(metrics_url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(metrics_url, timeout=10).text
    counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "animegan_webhook_deliveries_total":
                counts[(sample.labels["event"], sample.labels["outcome"])] = sample.value
    return counts


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's process group (Celery main, pool child, webhook sender), as a deploy does."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(60)


def test_succeeded_job_posts_one_signed_delivery_whose_body_is_the_job(
    tmp_path: Path,
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    start_api: Callable[..., str],
    receiver: Receiver,
    photo: Callable[[], bytes],
) -> None:
    metrics_dir, port = tmp_path / "metrics", free_port()
    metrics_dir.mkdir()
    spawn_worker(redis_url, ANIMEGAN_METRICS_PORT=str(port), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **WEBHOOK_ENV)
    base = start_api(redis_url=redis_url, **API_WEBHOOKS)

    accepted = submit(base, photo(), receiver.url("/hook?src=test"))
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    [hit] = receiver.wait_for("/hook?src=test", 1)
    time.sleep(1.0)  # a second delivery would arrive within a few poll intervals
    assert len(receiver.on("/hook?src=test")) == 1

    assert hit.verified
    assert hit.headers["animegan-event"] == "job.succeeded"
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert json.loads(hit.body) == httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
    assert json.loads(hit.body)["status"] == "succeeded"
    stored = delivery_fields(redis_url, hit.headers["animegan-delivery"])
    assert stored["state"] == "delivered"
    assert stored["job_id"] == job_id
    assert stored["attempt"] == "1"
    counts = webhook_counts(f"http://127.0.0.1:{port}/metrics")
    assert counts[("job.succeeded", "delivered")] == 1
    assert counts[("job.failed", "given_up")] == 0


def test_failed_job_posts_job_failed_with_its_error(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    start_api: Callable[..., str],
    receiver: Receiver,
    photo: Callable[[], bytes],
) -> None:
    base = start_api(redis_url=redis_url, **API_WEBHOOKS)
    job_id = submit(base, photo(), receiver.url("/failed")).json()["id"]
    # The input expires before any worker takes the job: the worker fails it as input-expired.
    with redis.Redis.from_url(redis_url) as client:
        assert client.delete(input_key(job_id)) == 1
    spawn_worker(redis_url, **WEBHOOK_ENV)

    [hit] = receiver.wait_for("/failed", 1)
    assert hit.verified
    assert hit.headers["animegan-event"] == "job.failed"
    body = json.loads(hit.body)
    assert body == wait_finished(base, job_id)
    assert body["status"] == "failed"
    assert body["error"]["type"] == "/problems/input-expired"


def test_receiver_failing_twice_gets_the_same_delivery_three_times(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    start_api: Callable[..., str],
    receiver: Receiver,
    photo: Callable[[], bytes],
) -> None:
    receiver.scripts["/flaky"] = [500, 500]
    spawn_worker(redis_url, ANIMEGAN_WEBHOOK_RETRY_SCHEDULE_S="0,0.5,1,30", **WEBHOOK_ENV)
    base = start_api(redis_url=redis_url, **API_WEBHOOKS)
    job_id = submit(base, photo(), receiver.url("/flaky")).json()["id"]

    hits = receiver.wait_for("/flaky", 3)
    assert [h.status for h in hits] == [500, 500, 200]
    assert all(h.verified for h in hits)
    assert len({h.headers["animegan-delivery"] for h in hits}) == 1
    assert len({h.body for h in hits}) == 1  # the same bytes on every retry
    assert json.loads(hits[0].body) == wait_finished(base, job_id)
    stored = delivery_fields(redis_url, hits[0].headers["animegan-delivery"])
    assert stored["state"] == "delivered"
    assert stored["attempt"] == "3"


def test_redirect_is_a_failed_attempt_and_is_not_followed(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    start_api: Callable[..., str],
    receiver: Receiver,
    photo: Callable[[], bytes],
) -> None:
    receiver.scripts["/moved"] = [302, 302]
    spawn_worker(redis_url, ANIMEGAN_WEBHOOK_RETRY_SCHEDULE_S="0,0.5", **WEBHOOK_ENV)
    base = start_api(redis_url=redis_url, **API_WEBHOOKS)
    submit(base, photo(), receiver.url("/moved"))

    hits = receiver.wait_for("/moved", 2)
    delivery_id = hits[0].headers["animegan-delivery"]
    deadline = time.monotonic() + 30
    while delivery_fields(redis_url, delivery_id).get("state") != "given_up":
        assert time.monotonic() < deadline, delivery_fields(redis_url, delivery_id)
        time.sleep(0.1)
    stored = delivery_fields(redis_url, delivery_id)
    assert stored["last_error"] == "HTTP 302"
    assert stored["attempt"] == "2"
    assert receiver.on("/followed") == []
    with redis.Redis.from_url(redis_url) as client:
        assert client.zscore(WEBHOOKS_DUE_KEY, delivery_id) is None
        assert 0 < client.ttl(webhook_key(delivery_id)) <= 86400  # kept for inspection, then forgotten


def test_delivery_survives_a_worker_restart_between_retries(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    start_api: Callable[..., str],
    receiver: Receiver,
    photo: Callable[[], bytes],
) -> None:
    receiver.scripts["/later"] = [503]
    schedule = {"ANIMEGAN_WEBHOOK_RETRY_SCHEDULE_S": "0,3"}
    worker = spawn_worker(redis_url, **schedule, **WEBHOOK_ENV)
    base = start_api(redis_url=redis_url, **API_WEBHOOKS)
    submit(base, photo(), receiver.url("/later"))
    [first] = receiver.wait_for("/later", 1)
    delivery_id = first.headers["animegan-delivery"]

    stop_worker(worker)
    time.sleep(4.0)  # the retry falls due while no sender runs
    assert len(receiver.on("/later")) == 1
    assert delivery_fields(redis_url, delivery_id)["state"] == "pending"

    spawn_worker(redis_url, **schedule, **WEBHOOK_ENV)
    hits = receiver.wait_for("/later", 2)
    assert [h.headers["animegan-delivery"] for h in hits] == [delivery_id, delivery_id]
    assert [h.status for h in hits] == [503, 200]
    assert hits[1].verified
    # The receiver has the POST before the sender, reading the 200, records it: wait for that write.
    deadline = time.monotonic() + 10
    while delivery_fields(redis_url, delivery_id)["state"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert delivery_fields(redis_url, delivery_id)["state"] == "delivered"


def test_loopback_callback_is_refused_at_submit_without_the_opt_in(
    redis_url: str, start_api: Callable[..., str], receiver: Receiver, photo: Callable[[], bytes]
) -> None:
    base = start_api(redis_url=redis_url, webhook_secret=SECRET)
    for url in (f"http://localhost:{receiver.port}/hook", receiver.url("/hook"), "http://[::1]/", "ftp://example.com/"):
        response = submit(base, photo(), url)
        assert response.status_code == 422, url
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "/problems/callback-url-refused"
        assert problem["errors"][0]["loc"] == ["body", "callback_url"]
    assert "loopback" in submit(base, photo(), f"http://localhost:{receiver.port}/").json()["detail"]
    with redis.Redis.from_url(redis_url) as client:
        assert client.keys("animegan:job:*") == []


def test_callback_is_refused_when_the_gateway_has_no_secret(
    redis_url: str, start_api: Callable[..., str], photo: Callable[[], bytes]
) -> None:
    base = start_api(redis_url=redis_url, webhook_allow_private=True)
    response = submit(base, photo(), "https://example.com/hook")
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/callback-url-refused"
    assert "ANIMEGAN_WEBHOOK_SECRET" in response.json()["detail"]
    assert submit(base, photo(), None).status_code == 202  # jobs without a callback are unaffected


def test_the_sender_process_ends_with_its_worker_even_when_the_worker_is_killed(
    redis_url: str, spawn_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    worker = spawn_worker(redis_url, **WEBHOOK_ENV)
    senders = [p for p in psutil.Process(worker.pid).children() if "worker.webhooks" in " ".join(p.cmdline())]
    assert len(senders) == 1
    os.kill(worker.pid, signal.SIGKILL)  # the Celery main process only: no shutdown hook runs
    worker.wait(10)
    senders[0].wait(10)  # raises psutil.TimeoutExpired if the sender outlived its worker
    assert not senders[0].is_running()


def test_a_video_posts_one_delivery_when_its_join_ends_it_whose_body_is_the_video(
    redis_url: str,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    start_api: Callable[..., str],
    receiver: Receiver,
    clip: Callable[..., bytes],
) -> None:
    spawn_worker(redis_url, **WEBHOOK_ENV)
    base = start_api(redis_url=redis_url, **API_WEBHOOKS)
    data = {"callback_url": receiver.url("/video")}
    answer = httpx.post(f"{base}/videos", files={"video": ("c.mp4", clip(frames=75), "video/mp4")}, data=data)
    assert answer.status_code == 202, answer.text
    [hit] = receiver.wait_for("/video", 1, timeout_s=120)
    time.sleep(1.0)  # no segment announces itself: one delivery for the whole clip
    assert len(receiver.on("/video")) == 1
    assert hit.verified
    assert hit.headers["animegan-event"] == "job.succeeded"
    body = json.loads(hit.body)
    assert body == httpx.get(f"{base}/jobs/{answer.json()['id']}", timeout=10).json()
    assert body["kind"] == "video"
    assert body["progress"] == {"frames_done": 75, "frames_total": 75}
    assert {s["status"] for s in body["segments"]} == {"succeeded"}
