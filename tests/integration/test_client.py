"""animegan.client against the real gateway on a socket, real Redis and (for round trips) the real worker.

Waiting is checked both ways: following the event stream (no poll at all), and polling when the
real stream ends before the job does. Jobs on a database no worker listens on are moved through
their states with the job store's own transitions, exactly as a worker moves them.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
import httpx
import pytest
import redis
import uvicorn
from PIL import Image

from animegan.client import ApiError, AsyncClient, Client, JobTimeoutError, ServiceUnreachableError
from animegan.redis_server import free_port
from api.config import ApiSettings
from api.events.streams import StreamLimits, get_stream_limits
from api.main import create_app
from imaging.decode import decode_image
from jobstore.keys import SERVICE_TIME_KEY, job_key, result_key
from jobstore.queue import QueueScripts, claim_call
from jobstore.records import JobRecord, now
from jobstore.transitions import add_mark_succeeded

ApiFactory = Callable[..., str]
Photo = Callable[[], bytes]


class RecordingTransport(httpx.HTTPTransport):
    """The real HTTP transport, remembering each request's method, path and Authorization header."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path, request.headers.get("authorization")))
        return super().handle_request(request)

    def paths(self, method: str) -> list[str]:
        return [path for m, path, _ in self.requests if m == method]


def expected_size(image: bytes, max_side: int = 128) -> tuple[int, int]:
    return decode_image(image, max_side=max_side).image.size


def test_sync_round_trip_follows_the_event_stream_and_sends_the_key(
    start_api: ApiFactory, worker_redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=worker_redis_url)
    image = photo()
    transport = RecordingTransport()
    with Client(base, api_key="k-123", transport=transport) as client:
        job = client.submit(image, style="hayao", format="webp")
        assert job.status in ("queued", "running")
        assert job.output.format == "webp"
        done = client.wait(job, timeout=120)
        assert done.succeeded, done
        data = client.result(done)
    with Image.open(io.BytesIO(data)) as result:
        assert result.format == "WEBP"
        assert result.size == expected_size(image) == (done.output.width, done.output.height)
    # The stream told the client everything: not one poll of GET /jobs/{id}.
    assert transport.paths("GET") == [f"/jobs/{job.id}/events", f"/jobs/{job.id}/result"]
    assert {auth for _, _, auth in transport.requests} == {"Bearer k-123"}


def test_async_round_trip_in_one_call_and_async_errors(
    start_api: ApiFactory, worker_redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=worker_redis_url)
    image = photo()

    async def run() -> bytes:
        async with AsyncClient(base) as client:
            with pytest.raises(ApiError) as refused:
                await client.submit(image, style="no-such-style")
            assert refused.value.status == 422
            return await client.stylize(io.BytesIO(image), format="jpeg", timeout=120)

    data = anyio.run(run)
    with Image.open(io.BytesIO(data)) as result:
        assert result.format == "JPEG"
        assert result.size == expected_size(image)


def test_refusals_raise_api_errors_with_the_problem_document(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url)
    with Client(base) as client:
        with pytest.raises(ApiError) as unknown_style:
            client.submit(photo(), style="no-such-style")
        error = unknown_style.value
        assert error.status == 422
        assert error.slug == "validation-error"
        assert error.problem["type"] == "/problems/validation-error"
        assert error.problem["errors"][0]["loc"] == ["body", "style"]
        assert "no-such-style" in str(error)

        with pytest.raises(ApiError) as not_an_image:
            client.submit(b"GIF89a not what we take")
        assert (not_an_image.value.status, not_an_image.value.slug) == (415, "unsupported-media-type")

        with pytest.raises(ApiError) as unknown_job:
            client.job("AAAAAAAAAAAAAAAAAAAAAA")
        assert (unknown_job.value.status, unknown_job.value.slug) == (404, "job-not-found")

        queued = client.submit(photo())  # no worker listens here: it stays queued
        with pytest.raises(ApiError) as not_ready:
            client.result(queued)
        assert (not_ready.value.status, not_ready.value.slug) == (409, "job-not-ready")
        assert (not_ready.value.retry_after or 0) >= 1

        started = time.monotonic()
        with pytest.raises(JobTimeoutError) as late:
            client.wait(queued, timeout=1.0)
        assert late.value.job.status == "queued"
        assert 0.9 <= time.monotonic() - started < 5

    with Client(f"http://127.0.0.1:{free_port()}") as nobody, pytest.raises(ServiceUnreachableError):
        nobody.job("AAAAAAAAAAAAAAAAAAAAAA")


@contextmanager
def serving(redis_url: str, limits: StreamLimits) -> Iterator[str]:
    """The real gateway on a socket, its event streams timed by ``limits``."""
    app = create_app(ApiSettings(redis_url=redis_url, styles=["hayao"], default_style="hayao", max_side=128))
    app.dependency_overrides[get_stream_limits] = lambda: limits
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the API thread ended"
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def finish_later(redis_url: str, job_id: str, after_s: float) -> threading.Thread:
    """Move the job to running, then succeeded, as a worker does, ``after_s`` seconds from now."""

    def run() -> None:
        with redis.Redis.from_url(redis_url) as store:
            time.sleep(after_s / 2)
            keys, args = claim_call("test:1", now(), 60, 3)
            assert QueueScripts(store).claim(keys=keys, args=args) == [b"claimed", job_id.encode()]
            time.sleep(after_s / 2)
            store.set(result_key(job_id), b"result bytes")
            pipe = store.pipeline()
            record = JobRecord.from_hash(store.hgetall(job_key(job_id)))
            add_mark_succeeded(pipe, record, inference_s=0.5, width=128, height=85, size=12)
            pipe.execute()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_wait_polls_when_the_event_stream_ends_before_the_job(redis_url: str, photo: Photo) -> None:
    # The real stream ends after 0.3 s (its lifetime); the job ends after 2 s.
    limits = StreamLimits(position_refresh_s=0.05, heartbeat_s=60.0, max_duration_s=0.3)
    transport = RecordingTransport()
    with serving(redis_url, limits) as base, Client(base, transport=transport, poll_interval_s=0.2) as client:
        job = client.submit(photo())
        worker = finish_later(redis_url, job.id, after_s=2.0)
        done = client.wait(job, timeout=30)
        worker.join()
        assert done.succeeded
        assert client.result(done) == b"result bytes"
    polls = transport.paths("GET").count(f"/jobs/{job.id}")
    assert transport.paths("GET")[0] == f"/jobs/{job.id}/events"
    # Polled at the service's Retry-After pace (at least 1 s): a few polls, not one every 0.2 s.
    assert 1 <= polls <= 4


def test_submit_retries_a_full_queue_after_its_retry_after_within_its_budget(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, max_queue_depth=1)
    with redis.Redis.from_url(redis_url) as store:
        store.set(SERVICE_TIME_KEY, "0.5")  # Retry-After: (1 waiting + 1) x 0.5 s = 1 s
        with Client(base, retry_for_s=0) as impatient, Client(base, retry_for_s=2.5) as bounded:
            blocker = impatient.submit(photo())
            with pytest.raises(ApiError) as full:
                impatient.submit(photo())
            assert (full.value.status, full.value.slug, full.value.retry_after) == (503, "queue-full", 1.0)

            started = time.monotonic()
            with pytest.raises(ApiError) as still_full:
                bounded.submit(photo())
            # Tried at 0, 1 and 2 s; a fourth try would wait past the 2.5 s budget, so it raised.
            assert still_full.value.status == 503
            assert 1.9 <= time.monotonic() - started < 2.5

            threading.Timer(1.5, lambda: httpx.delete(f"{base}/jobs/{blocker.id}")).start()
            started = time.monotonic()
            with Client(base, retry_for_s=10) as patient:
                accepted = patient.submit(photo())
            assert accepted.status == "queued"
            assert 1.9 <= time.monotonic() - started < 4
