"""Scaffolding of the fault tests (test_faults_delivery.py, test_faults_restarts.py, test_limits.py).

- ``photo_of(width)``: a real photo at that width (4:3), unique bytes and pixels on every call, so
  no two jobs share a dedup entry and the width sets how long a job runs.
- ``jobs``: a client's view (submit, poll until the job ends) and the store's view (the record,
  waiting until a given attempt runs) of the jobs of a stack.
- ``pool``: the pool children of a worker process, and killing them or the whole worker.
- ``result_writes``: counts writes to result keys from Redis keyspace notifications (a SET NX that
  sets nothing sends none, so the count is the number of times a stored result changed).

Restarting is the conftest fixtures' part: ``spawn_worker`` again, ``ApiProcess.start()`` again,
``durable_redis.start()`` again.
"""

from __future__ import annotations

import io
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import redis
from PIL import Image

from jobstore.keys import job_key, result_key
from jobstore.records import JobRecord, JobState

_variants = itertools.count(1)


@pytest.fixture(scope="module")
def base_photo(samples_dir: Path) -> Image.Image:
    with Image.open(samples_dir / "railway_crossing.jpg") as img:
        return img.convert("RGB")


@pytest.fixture
def photo_of(base_photo: Image.Image) -> Callable[[int], bytes]:
    """``photo_of(width)``: a real photo at that width (4:3), unique bytes and pixels on every call."""

    def make(width: int) -> bytes:
        n = next(_variants)
        image = base_photo.resize((width, width * 3 // 4))
        image.paste((n * 53 % 256, n * 97 % 256, n * 29 % 256), (0, 0, 16, 16))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        return buffer.getvalue()

    return make


class Jobs:
    """Jobs of a stack, as a client sees them over HTTP and as the store holds them."""

    @staticmethod
    def submit(base: str, image: bytes) -> str:
        response = httpx.post(f"{base}/stylize", files={"image": ("p.jpg", image, "image/jpeg")}, timeout=60)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    @staticmethod
    def get(base: str, job_id: str) -> dict[str, Any]:
        response = httpx.get(f"{base}/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def follow(self, base: str, job_id: str, timeout_s: float = 240.0) -> tuple[dict[str, Any], list[str]]:
        """Poll until the job ends; returns its last state and the distinct states seen, in order."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(base, job_id)
            if not seen or seen[-1] != job["status"]:
                seen.append(job["status"])
            if job["status"] in ("succeeded", "failed"):
                return job, seen
            assert time.monotonic() < deadline, f"job still {job['status']} after {timeout_s} s"
            time.sleep(0.1)

    @staticmethod
    def stored(url: str) -> list[str]:
        """The ids of every job record in the store (a client must see one job per submission)."""
        with redis.Redis.from_url(url) as client:
            return sorted(key.decode().rsplit(":", 1)[-1] for key in client.scan_iter(job_key("*")))

    @staticmethod
    def record(url: str, job_id: str) -> JobRecord:
        with redis.Redis.from_url(url) as client:
            return JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]

    def wait_running(self, url: str, job_id: str, *, attempt: int = 1, timeout_s: float = 120.0) -> JobRecord:
        """The record once attempt ``attempt`` (or a later one) of the job runs."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = self.record(url, job_id)
            if record.state is JobState.RUNNING and record.attempts >= attempt:
                return record
            assert not record.state.terminal, f"job ended {record.state} before it could be hit"
            assert time.monotonic() < deadline, "job never started"
            time.sleep(0.05)


class Pool:
    """The processes of a worker started with ``spawn_worker`` (its own process group)."""

    @staticmethod
    def children(worker: subprocess.Popen[bytes], count: int = 1, timeout_s: float = 120.0) -> list[int]:
        """The pids of the worker's ``count`` pool children (waits while replacements are forked)."""
        deadline = time.monotonic() + timeout_s
        while True:
            children = sorted(c.pid for c in psutil.Process(worker.pid).children())
            if len(children) == count:
                return children
            assert time.monotonic() < deadline, f"worker has {len(children)} pool children, expected {count}"
            time.sleep(0.05)

    def kill_child(self, worker: subprocess.Popen[bytes]) -> int:
        """SIGKILL the worker's one pool child (what the OOM killer does); returns its pid."""
        [victim] = self.children(worker)
        os.kill(victim, signal.SIGKILL)
        return victim

    @staticmethod
    def kill_worker(worker: subprocess.Popen[bytes]) -> None:
        """SIGKILL the main process and its children at once: nobody records anything."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


@pytest.fixture(scope="session")
def jobs() -> Jobs:
    return Jobs()


@pytest.fixture(scope="session")
def pool() -> Pool:
    return Pool()


class ResultWrites:
    """Counts writes to result keys from Redis keyspace notifications (``set`` events)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.db = int(parts.path.strip("/") or 0)
        self.client = redis.Redis.from_url(url)
        self.events: list[str] = []
        self._stop = threading.Event()

    def __enter__(self) -> ResultWrites:
        self.client.config_set("notify-keyspace-events", "K$")
        self.pubsub = self.client.pubsub()
        self.pubsub.psubscribe(f"__keyspace@{self.db}__:{result_key('*')}")
        self.pubsub.get_message(timeout=5)  # the subscription confirmation
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()
        return self

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage" and message["data"] == b"set":
                self.events.append(message["channel"].decode().rsplit(":", 1)[-1])

    def count(self, job_id: str) -> int:
        time.sleep(0.5)  # notifications are asynchronous: let the listener drain
        return self.events.count(job_id)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()
        self.client.config_set("notify-keyspace-events", "")
        self.client.close()


@pytest.fixture
def result_writes(redis_url: str) -> Iterator[ResultWrites]:
    with ResultWrites(redis_url) as writes:
        yield writes
