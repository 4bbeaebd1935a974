"""GET /jobs/{id}/events against real Redis and a real uvicorn socket.

Jobs are submitted through POST /stylize on a database no worker listens on, then moved through
their states with the job store's own transitions (jobstore.transitions), exactly as a worker moves
them; one test follows a job through the session's real worker. Redis MONITOR shows which reads a
stream makes: pushed changes, not polling.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from PIL import Image

from animegan.redis_server import free_port
from api.config import ApiSettings
from api.events.streams import StreamLimits, get_stream_limits
from api.main import create_app
from jobstore.keys import job_key, result_key
from jobstore.queue import QueueScripts, claim_call
from jobstore.records import ErrorCode, JobRecord, now
from jobstore.transitions import add_mark_failed, add_mark_succeeded

FAST = StreamLimits(position_refresh_s=0.05, heartbeat_s=60.0, max_duration_s=60.0)
# No timed read within a test's life: whatever the stream reports must have been pushed.
PUSH_ONLY = StreamLimits(position_refresh_s=3600.0, heartbeat_s=60.0, max_duration_s=120.0)
_shades = itertools.count(1)


@contextmanager
def serving(redis_url: str, limits: StreamLimits, max_side: int = 128) -> Iterator[str]:
    """The real gateway on a socket, with the event stream's timing replaced by ``limits``."""
    settings = ApiSettings(redis_url=redis_url, styles=["hayao"], default_style="hayao", max_side=max_side)
    app = create_app(settings)
    app.dependency_overrides[get_stream_limits] = lambda: limits
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the API thread ended"
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@dataclass
class Event:
    name: str = "message"
    data: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


def read_events(lines: Iterator[str]) -> Iterator[Event]:
    """A minimal text/event-stream parser; comment-only blocks come out as unnamed events."""
    event = Event()
    for line in lines:
        if line == "":
            if event.data or event.comments or event.retry is not None:
                yield event
            event = Event()
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            event.comments.append(value)
        elif name == "event":
            event.name = value
        elif name == "data":
            event.data = f"{event.data}\n{value}" if event.data else value
        elif name == "retry":
            event.retry = int(value)


class Jobs:
    """Submit through the API; change state the way a worker does."""

    def __init__(self, client: httpx.Client, redis_url: str, photo: Callable[[], bytes]) -> None:
        self.client = client
        self.redis = redis.Redis.from_url(redis_url)
        self.photo = photo

    def submit(self) -> str:
        response = self.client.post("/stylize", files={"image": ("p.jpg", self.photo(), "image/jpeg")})
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def record(self, job_id: str) -> JobRecord:
        return JobRecord.from_hash(self.redis.hgetall(job_key(job_id)))

    def running(self, job_id: str) -> None:
        """Claim the job as a worker does (the job store's CLAIM script; the only job waiting)."""
        keys, args = claim_call("test:1", now(), 60.0, 3)
        assert QueueScripts(self.redis).claim(keys=keys, args=args) == [b"claimed", job_id.encode()]

    def succeeded(self, job_id: str) -> None:
        self.redis.set(result_key(job_id), b"\x89PNG result bytes")
        pipe = self.redis.pipeline()
        add_mark_succeeded(pipe, self.record(job_id), inference_s=0.25, width=128, height=85, size=17)
        pipe.execute()

    def failed(self, job_id: str) -> None:
        pipe = self.redis.pipeline()
        add_mark_failed(pipe, self.record(job_id), ErrorCode.INVALID_IMAGE, "The JPEG data is truncated.")
        pipe.execute()


@pytest.fixture
def api(redis_url: str) -> Iterator[httpx.Client]:
    with serving(redis_url, FAST) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


@pytest.fixture
def jobs(api: httpx.Client, redis_url: str, photo: Callable[[], bytes]) -> Iterator[Jobs]:
    helper = Jobs(api, redis_url, photo)
    yield helper
    helper.redis.close()


@contextmanager
def follow(client: httpx.Client, job_id: str) -> Iterator[tuple[httpx.Response, Iterator[Event]]]:
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        yield response, read_events(response.iter_lines())


@pytest.mark.parametrize("job_id", ["AAAAAAAAAAAAAAAAAAAAAA", "not-an-id!"])
def test_unknown_job_is_a_404_problem(api: httpx.Client, job_id: str) -> None:
    response = api.get(f"/jobs/{job_id}/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/job-not-found"


def test_stream_sends_the_current_state_then_every_change_and_ends(api: httpx.Client, jobs: Jobs) -> None:
    ahead, job_id = jobs.submit(), jobs.submit()
    with follow(api, job_id) as (response, events):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"

        first = next(events)
        assert (first.name, first.retry) == ("queued", 2000)
        assert first.json() == api.get(f"/jobs/{job_id}").json()
        assert first.json()["queue_position"] == 2

        jobs.running(ahead)  # the job ahead leaves the queue: a new position is a new event
        moved = next(events)
        assert (moved.name, moved.json()["queue_position"]) == ("queued", 1)

        jobs.running(job_id)
        running = next(events)
        assert running.name == "running"
        assert running.json()["queue_position"] is None

        jobs.succeeded(job_id)
        done = next(events)
        assert done.name == "succeeded"
        assert done.json() == api.get(f"/jobs/{job_id}").json()
        assert done.json()["output"]["bytes"] == 17
        assert list(events) == []  # the stream ends after a terminal state


def test_failed_job_sends_its_error_and_a_finished_job_answers_once(api: httpx.Client, jobs: Jobs) -> None:
    job_id = jobs.submit()
    with follow(api, job_id) as (_, events):
        assert next(events).name == "queued"
        jobs.failed(job_id)
        failed = next(events)
        assert failed.name == "failed"
        assert failed.json()["error"]["type"] == "/problems/invalid-image"
        assert failed.json()["error"]["detail"] == "The JPEG data is truncated."
        assert list(events) == []
    # A client that reconnects after the end gets the terminal state once more, then the end.
    with follow(api, job_id) as (_, events):
        assert [e.name for e in events] == ["failed"]


def test_job_that_expires_while_followed_ends_with_an_expired_event(api: httpx.Client, jobs: Jobs) -> None:
    job_id = jobs.submit()
    with follow(api, job_id) as (_, events):
        assert next(events).name == "queued"
        jobs.redis.delete(job_key(job_id))
        expired = next(events)
        assert expired.name == "expired"
        assert expired.json() == {
            "type": "/problems/job-not-found",
            "title": "Job not found",
            "status": 404,
            "detail": "The job expired while it was followed.",
            "instance": f"/jobs/{job_id}/events",
        }
        assert list(events) == []


def test_idle_stream_sends_heartbeats_and_ends_after_its_lifetime(redis_url: str, photo: Callable[[], bytes]) -> None:
    limits = StreamLimits(position_refresh_s=0.05, heartbeat_s=0.2, max_duration_s=1.0)
    with serving(redis_url, limits) as url, httpx.Client(base_url=url, timeout=10) as client:
        job_id = Jobs(client, redis_url, photo).submit()
        with follow(client, job_id) as (_, events):
            received = list(events)  # ends by itself: the lifetime is bounded
    assert received[0].name == "queued"
    heartbeats = [e for e in received[1:] if e.comments]
    assert heartbeats, "an idle stream should carry comment lines"
    assert all(not e.data for e in heartbeats)
    # Still queued: the client is expected to reconnect, and gets the current state first again.
    assert all(e.name != "succeeded" for e in received)


def test_stream_follows_a_real_worker_to_its_result_by_push(
    celery_worker: subprocess.Popen[bytes], worker_redis_url: str, samples_dir: Path
) -> None:
    # A photo large enough that its running state outlasts a re-read (a 128-pixel one takes a warm
    # worker about 50 ms, shorter than a notice and the read it triggers on a loaded machine).
    with Image.open(samples_dir / "chelsea.jpg") as img:
        image = img.convert("RGB").resize((768, 512))
    shade = next(_shades) * 53 % 256  # steps JPEG cannot blur together: no earlier job answers this one
    image.paste((shade, 255 - shade, 40), (0, 0, 64, 64))

    def photo() -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95)
        return buffer.getvalue()

    with serving(worker_redis_url, PUSH_ONLY, max_side=768) as url, httpx.Client(base_url=url, timeout=60) as client:
        # The worker is held still until the stream is open, so the job cannot start before the stream
        # follows it: everything after "queued" arrives by push (PUSH_ONLY polls nothing).
        os.killpg(celery_worker.pid, signal.SIGSTOP)
        try:
            job_id = Jobs(client, worker_redis_url, photo).submit()
            with follow(client, job_id) as (_, events):
                first = next(events)
                os.killpg(celery_worker.pid, signal.SIGCONT)
                received = [first, *events]  # the stream ends by itself after the terminal state
        finally:
            os.killpg(celery_worker.pid, signal.SIGCONT)
        assert [e.name for e in received] == ["queued", "running", "succeeded"]
        assert received[-1].json() == client.get(f"/jobs/{job_id}").json()
        assert received[-1].json()["output"]["width"] == 768
        assert client.get(f"/jobs/{job_id}/result").status_code == 200


class CommandLog:
    """The commands Redis runs on one database, seen through MONITOR from a thread."""

    def __init__(self, redis_url: str) -> None:
        self.url = redis_url
        self.db = int(redis_url.rsplit("/", 1)[1])
        self.commands: list[str] = []
        self._stop = threading.Event()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "MONITOR did not start"

    def _run(self, ready: threading.Event) -> None:
        with redis.Redis.from_url(self.url) as client, client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if self._stop.is_set():
                    return
                if command["db"] == self.db:
                    self.commands.append(command["command"])

    def count(self, command: str) -> int:
        return sum(1 for c in list(self.commands) if c == command)

    def close(self) -> None:
        self._stop.set()
        with redis.Redis.from_url(self.url) as client:
            client.ping()  # wakes the monitor so it sees the stop
        self._thread.join(10)


@pytest.fixture
def command_log(redis_url: str) -> Iterator[CommandLog]:
    log = CommandLog(redis_url)
    yield log
    log.close()


def test_idle_stream_reads_only_at_the_position_refresh_and_not_at_all_while_running(
    redis_url: str, photo: Callable[[], bytes], command_log: CommandLog
) -> None:
    limits = StreamLimits(position_refresh_s=1.0, heartbeat_s=60.0, max_duration_s=60.0)
    with serving(redis_url, limits) as url, httpx.Client(base_url=url, timeout=10) as client:
        jobs = Jobs(client, redis_url, photo)
        job_id = jobs.submit()
        read = f"HGETALL {job_key(job_id)}"
        with follow(client, job_id) as (_, events):
            assert next(events).name == "queued"
            opened = command_log.count(read)
            time.sleep(3.5)
            refreshes = command_log.count(read) - opened
            # One read a second while queued; the old 0.5 s poll would have made 7.
            assert 2 <= refreshes <= 4, command_log.commands

            jobs.running(job_id)
            assert next(events).name == "running"
            time.sleep(0.3)  # the read behind the event has been logged by now
            after_change = command_log.count(read)
            time.sleep(3.0)
            assert command_log.count(read) == after_change, "a running job with no change must not be read"

            jobs.succeeded(job_id)
            assert next(events).name == "succeeded"
        jobs.redis.close()
