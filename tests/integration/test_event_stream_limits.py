"""Event streams under pressure: the caps per client and per process, slots freed by a client that
goes away, one pub/sub connection per gateway, and Redis restarting or vanishing under a stream.

Real Redis, the real gateway on a socket (``start_api``). Clients are told apart by their address:
each httpx client binds its own loopback source address (127.0.0.x), which the gateway sees.
Jobs are moved with the job store's own transitions, as a worker moves them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
import redis

from jobstore.keys import events_channel, job_key, result_key
from jobstore.queue import claim_call
from jobstore.queue_scripts import CLAIM
from jobstore.records import JobRecord, now
from jobstore.transitions import add_mark_succeeded

EventNames = Iterator[str]


def client_from(base_url: str, address: str = "127.0.0.1", timeout_s: float = 10.0) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base_url, transport=transport, timeout=timeout_s)


@contextmanager
def stream(client: httpx.Client, job_id: str) -> Iterator[tuple[httpx.Response, EventNames]]:
    """An open event stream and the names of its events as they arrive."""
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        lines = response.iter_lines() if response.status_code == 200 else iter(())
        yield response, (line.removeprefix("event: ") for line in lines if line.startswith("event: "))


def submit(client: httpx.Client, photo: Callable[[], bytes]) -> str:
    response = client.post("/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def move(
    redis_url: str, job_id: str, change: Callable[[Any, JobRecord], None], *, kill_pubsub: bool = False
) -> list[Any]:
    """Apply a transition in one transaction; ``kill_pubsub`` first drops every pub/sub client in it,
    so the change's message reaches nobody (a message lost while the hub reconnects)."""
    with redis.Redis.from_url(redis_url) as client:
        record = JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]
        pipe = client.pipeline(transaction=True)
        if kill_pubsub:
            pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        change(pipe, record)
        return pipe.execute()


def running(pipe: Any, record: JobRecord) -> None:
    """What a worker's claim does (the job store's CLAIM script), inside the caller's transaction."""
    keys, args = claim_call("test:1", now(), 60.0, 3)
    pipe.register_script(CLAIM)(keys=keys, args=args)


def succeeded(pipe: Any, record: JobRecord) -> None:
    pipe.set(result_key(record.id), b"\x89PNG result bytes")
    add_mark_succeeded(pipe, record, inference_s=0.25, width=128, height=85, size=17)


def open_streams_gauge(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("animegan_event_streams_open "):
            return float(line.split()[1])
    raise AssertionError("animegan_event_streams_open is not exported")


def assert_too_many_streams(response: httpx.Response, setting: str) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["type"] == "/problems/too-many-streams"
    assert setting in body["detail"]


def pubsub_clients(redis_url: str) -> int:
    db = int(redis_url.rsplit("/", 1)[1])
    with redis.Redis.from_url(redis_url) as client:
        return sum(1 for c in client.client_list(_type="pubsub") if int(c["db"]) == db)


def subscribers(redis_url: str, job_id: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        ((_, count),) = client.pubsub_numsub(events_channel(job_id))
        return int(count)


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_streams_past_the_per_client_cap_get_429_while_other_clients_are_served(
    start_api: Callable[..., str], redis_url: str, photo: Callable[[], bytes]
) -> None:
    url = start_api(redis_url=redis_url, max_event_streams_per_client=2, max_event_streams=100)
    with client_from(url) as greedy, client_from(url, "127.0.0.2") as other, ExitStack() as held:
        job_id = submit(greedy, photo)
        for _ in range(2):
            response, names = held.enter_context(stream(greedy, job_id))
            assert (response.status_code, next(names)) == (200, "queued")
        assert_too_many_streams(greedy.get(f"/jobs/{job_id}/events"), "ANIMEGAN_MAX_EVENT_STREAMS_PER_CLIENT")
        # The cap comes before the lookup: an unknown id costs a capped client nothing either.
        assert greedy.get("/jobs/AAAAAAAAAAAAAAAAAAAAAA/events").status_code == 429
        # Another client is served (its own job: someone else's is a 404, as if it did not exist).
        assert other.get(f"/jobs/{job_id}/events").status_code == 404
        with stream(other, submit(other, photo)) as (response, names):
            assert (response.status_code, next(names)) == (200, "queued")


def test_streams_past_the_process_cap_get_429(
    start_api: Callable[..., str], redis_url: str, photo: Callable[[], bytes]
) -> None:
    url = start_api(redis_url=redis_url, max_event_streams=2, max_event_streams_per_client=10)
    with ExitStack() as held:
        clients = [held.enter_context(client_from(url, f"127.0.0.{n}")) for n in (1, 2, 3)]
        job_ids = [submit(client, photo) for client in clients]
        for client, job_id in zip(clients[:2], job_ids, strict=False):
            response, names = held.enter_context(stream(client, job_id))
            assert (response.status_code, next(names)) == (200, "queued")
        assert_too_many_streams(clients[2].get(f"/jobs/{job_ids[2]}/events"), "ANIMEGAN_MAX_EVENT_STREAMS")


def test_a_client_that_disconnects_frees_its_slot_and_its_subscription(
    start_api: Callable[..., str], redis_url: str, photo: Callable[[], bytes]
) -> None:
    url = start_api(redis_url=redis_url, max_event_streams_per_client=1)
    with client_from(url) as client:
        job_id = submit(client, photo)
        before = open_streams_gauge(client)
        with stream(client, job_id) as (_, names):
            assert next(names) == "queued"
            assert open_streams_gauge(client) == before + 1
            assert subscribers(redis_url, job_id) == 1
            assert client.get(f"/jobs/{job_id}/events").status_code == 429
        # Leaving the block closes the connection mid-stream: the gateway must notice without a write.
        wait_until(lambda: open_streams_gauge(client) == before, timeout_s=3.0)
        assert subscribers(redis_url, job_id) == 0
        with stream(client, job_id) as (response, names):
            assert (response.status_code, next(names)) == (200, "queued")


def test_streams_of_one_process_share_one_pubsub_connection(
    start_api: Callable[..., str], redis_url: str, photo: Callable[[], bytes]
) -> None:
    url = start_api(redis_url=redis_url)
    with client_from(url) as client, ExitStack() as held:
        job_ids = [submit(client, photo) for _ in range(3)]
        for job_id in [*job_ids, job_ids[0]]:
            _, names = held.enter_context(stream(client, job_id))
            assert next(names) == "queued"
        assert pubsub_clients(redis_url) == 1
        assert [subscribers(redis_url, j) for j in job_ids] == [1, 1, 1]  # one SUBSCRIBE per job, not per stream
    wait_until(lambda: all(subscribers(redis_url, j) == 0 for j in job_ids))


@pytest.fixture
def durable_url(durable_redis: Any) -> str:
    url = f"redis://{durable_redis.host}:{durable_redis.port}/0"
    with redis.Redis.from_url(url) as client:
        client.config_set("appendfsync", "always")  # the job written just before the kill must survive it
    return url


def test_a_message_lost_while_the_hub_reconnects_is_covered_by_a_re_read(
    start_api: Callable[..., str], durable_url: str, photo: Callable[[], bytes]
) -> None:
    url = start_api(redis_url=durable_url)
    with client_from(url) as client:
        job_id = submit(client, photo)
        move(durable_url, job_id, running)
        with stream(client, job_id) as (_, names):
            assert next(names) == "running"
            # Running jobs are not read on a timer: only the hub's re-read after reconnecting can tell.
            replies = move(durable_url, job_id, succeeded, kill_pubsub=True)
            assert replies[0] == 1, "the hub's pub/sub connection should have been the one cut off"
            assert replies[-1] == 0, "the PUBLISH should have reached nobody"
            assert next(names) == "succeeded"
            assert list(names) == []


def test_stream_of_a_running_job_continues_through_a_redis_restart(
    start_api: Callable[..., str], durable_redis: Any, durable_url: str, photo: Callable[[], bytes]
) -> None:
    url = start_api(redis_url=durable_url)
    with client_from(url, timeout_s=30) as client:
        job_id = submit(client, photo)
        with stream(client, job_id) as (_, names):
            assert next(names) == "queued"
            move(durable_url, job_id, running)
            assert next(names) == "running"
            durable_redis.kill()
            time.sleep(0.5)
            durable_redis.start()
            move(durable_url, job_id, succeeded)
            assert next(names) == "succeeded"
            assert list(names) == []


def test_stream_ends_cleanly_when_redis_stays_away_and_works_again_once_it_is_back(
    start_api: Callable[..., str], durable_redis: Any, durable_url: str, photo: Callable[[], bytes]
) -> None:
    url = start_api(redis_url=durable_url)
    with client_from(url, timeout_s=30) as client:
        job_id = submit(client, photo)
        move(durable_url, job_id, running)
        before = open_streams_gauge(client)
        with stream(client, job_id) as (_, names):
            assert next(names) == "running"
            durable_redis.kill()
            started = time.monotonic()
            assert list(names) == []  # ends, without a terminal event: EventSource would reconnect
            ended_after = time.monotonic() - started
        assert ended_after < 10.0, f"the stream took {ended_after:.1f} s to end"
        assert open_streams_gauge(client) == before  # the ended stream gave its slot back
        unavailable = client.get(f"/jobs/{job_id}/events")
        assert unavailable.status_code == 503
        assert unavailable.json()["type"] == "/problems/broker-unavailable"
        durable_redis.start()
        with stream(client, job_id) as (response, names):
            assert (response.status_code, next(names)) == (200, "running")
