"""The store's memory budget against real Redis servers: admission says 503 ``store-full`` before Redis is full.

Each Redis here is one the test starts itself with a small ``maxmemory`` (``noeviction``, as the service
runs it), so filling it disturbs no other test. "No write ever failed" is read from Redis itself: its
``errorstat_OOM`` counter (INFO errorstats) stays absent, and ``used_memory_peak`` stays under the bound.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio

from animegan.redis_server import RedisServer, free_port
from api.config import ApiSettings
from api.jobs.store_budget import StoreBudget
from api.problems import ApiError

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


@pytest.fixture
def small_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, bounded at 8 MiB."""
    with RedisServer(maxmemory=8 * MiB) as server:
        yield server


def _info(url: str, section: str) -> dict[str, object]:
    with redis.Redis.from_url(url) as client:
        return dict(client.info(section))


def _submit(base: str, image: bytes) -> httpx.Response:
    return httpx.post(f"{base}/stylize", files={"image": ("p.jpg", image, "image/jpeg")}, timeout=30)


def test_submissions_get_store_full_before_redis_refuses_a_write_and_admitted_jobs_all_finish(
    small_redis: RedisServer,
    start_api: Callable[..., str],
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    photo: Callable[[], bytes],
) -> None:
    # The queue limit is out of the way: memory is what must stop the submissions.
    base = start_api(redis_url=small_redis.url, max_queue_depth=10_000, max_queued_per_client=10_000)
    accepted: list[str] = []
    refusal: httpx.Response | None = None
    for _ in range(400):
        answer = _submit(base, photo())
        if answer.status_code == 503:
            refusal = answer
            break
        assert answer.status_code == 202, answer.text
        accepted.append(answer.json()["id"])
    assert refusal is not None, f"{len(accepted)} jobs admitted into 8 MiB and no store-full"
    assert refusal.headers["content-type"] == "application/problem+json"
    assert refusal.json()["type"] == "/problems/store-full"
    assert int(refusal.headers["Retry-After"]) >= 1
    assert len(accepted) >= 5  # the budget is not refusing from the start
    # Full, it keeps refusing. A fresh reading of INFO memory (once a second) may find room that the
    # worst-case estimates of the last second's admissions had reserved, and admit a job or two more:
    # never past the budget (no OOM, peak under 8 MiB, asserted below), and those jobs finish too.
    again = [_submit(base, photo()) for _ in range(10)]
    assert {a.status_code for a in again} <= {202, 503}, [a.text for a in again]
    assert any(a.status_code == 503 and a.json()["type"] == "/problems/store-full" for a in again)
    accepted += [a.json()["id"] for a in again if a.status_code == 202]

    # A worker fed every admitted job completes each one: the reserve held their results.
    spawn_worker(small_redis.url, ANIMEGAN_MAX_SIDE="128")
    deadline = time.monotonic() + 600
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {job: httpx.get(f"{base}/jobs/{job}").json()["status"] for job in accepted}
        if all(state in ("succeeded", "failed") for state in states.values()):
            break
        time.sleep(1)
    assert set(states.values()) == {"succeeded"}, states
    for job in accepted[:3] + accepted[-3:]:
        assert httpx.get(f"{base}/jobs/{job}/result").status_code == 200

    assert "errorstat_OOM" not in _info(small_redis.url, "errorstats")
    memory = _info(small_redis.url, "memory")
    assert int(str(memory["used_memory_peak"])) < 8 * MiB


def test_store_budget_bytes_bounds_a_redis_without_maxmemory(redis_url: str) -> None:
    async def scenario() -> tuple[ApiError | None, ApiError | None]:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            used = int((await client.info("memory"))["used_memory"])
            roomy = StoreBudget(ApiSettings(redis_url=redis_url, store_budget_bytes=used + 64 * MiB), client)
            tight = StoreBudget(ApiSettings(redis_url=redis_url, store_budget_bytes=used + MiB), client)
            unbounded = StoreBudget(ApiSettings(redis_url=redis_url), client)
            errors = []
            for budget in (roomy, tight):
                try:
                    await budget.check(100_000)
                    errors.append(None)
                except ApiError as exc:
                    errors.append(exc)
            await unbounded.check(10**12)  # maxmemory 0 and no budget set: nothing to check against
            return errors[0], errors[1]
        finally:
            await client.aclose()

    with redis.Redis.from_url(redis_url) as client:
        assert client.config_get("maxmemory")["maxmemory"] == "0"
    roomy, tight = asyncio.run(scenario())
    assert roomy is None
    assert tight is not None
    assert tight.slug == "store-full"
    assert tight.status == 503
    assert int(tight.headers["Retry-After"]) >= 1


def test_a_flood_of_checks_reads_info_once_per_second_and_cannot_overshoot(small_redis: RedisServer) -> None:
    async def flood() -> tuple[int, int]:
        client = redis.asyncio.Redis.from_url(small_redis.url)
        try:
            await client.config_resetstat()
            budget = StoreBudget(ApiSettings(redis_url=small_redis.url, max_side=128), client)
            admitted = refused = 0
            for _ in range(500):
                try:
                    await budget.check(20_000)
                    admitted += 1
                except ApiError:
                    refused += 1
            return admitted, refused
        finally:
            await client.aclose()

    started = time.monotonic()
    admitted, refused = asyncio.run(flood())
    elapsed = time.monotonic() - started
    calls = _info(small_redis.url, "commandstats").get("cmdstat_info", {"calls": 0})
    assert isinstance(calls, dict)
    assert int(calls["calls"]) <= 2 + elapsed  # one INFO per second of flood, not one per submission
    # Within one reading, what this process admitted counts against the budget: the flood is cut off.
    footprint = StoreBudget(ApiSettings(max_side=128), redis.asyncio.Redis()).job_footprint(20_000)
    assert refused > 0
    assert admitted * footprint <= 8 * MiB


def test_serve_starts_its_redis_with_the_configured_maxmemory(service_env: Callable[..., dict[str, str]]) -> None:
    env = service_env(ANIMEGAN_REDIS_MAXMEMORY="64mb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "animegan.serve", "serve", "--port", str(free_port()), "--workers", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        match = re.search(r"private Redis on (redis://\S+) \(memory only, maxmemory 64 MiB\)", line)
        assert match, line
        with redis.Redis.from_url(match.group(1), decode_responses=True) as client:
            assert client.config_get("maxmemory")["maxmemory"] == str(64 * MiB)
            assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(90) == 0


def test_serve_refuses_a_bad_maxmemory_in_one_line(service_env: Callable[..., dict[str, str]]) -> None:
    env = service_env(ANIMEGAN_REDIS_MAXMEMORY="lots")
    done = subprocess.run(
        [sys.executable, "-m", "animegan.serve", "serve", "--port", str(free_port())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "animegan serve: invalid configuration: ANIMEGAN_REDIS_MAXMEMORY: not a size: 'lots' "
        "(examples: 512mb, 2gb, 0 for no limit)"
    ]
    assert "private Redis" not in done.stdout
