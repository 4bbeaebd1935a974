"""Clips with object storage: the production gateway and a worker against a real S3 server (SeaweedFS).

The clip streams into the bucket (a multipart upload), is probed there by ranged reads, its pieces and
result are objects; Redis holds records, the probe and queues only (no value over 64 KiB). The result
comes through the gateway and through its presigned link, byte for byte the same; DELETE removes the
clip's, the pieces' and the result's objects at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import httpx
import pytest
import redis

from jobstore.blobs import input_name, result_name
from jobstore.keys import clip_chunk_key
from jobstore.objectstore import ObjectStore
from jobstore.video_blobs import piece_name
from video.probe import probe

MAX_VALUE_BYTES = 64 * 1024
Make = Callable[..., bytes]


def largest_value(client: redis.Redis) -> tuple[int, str]:
    largest = (0, "")
    for key in client.scan_iter(count=1000):
        size = client.memory_usage(key, samples=0) or 0
        largest = max(largest, (int(size), key.decode()))
    return largest


def wait_done(http: httpx.Client, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
        if body["status"] in ("succeeded", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


@pytest.fixture
def stack(
    redis_url: str,
    spawn_worker: Callable[..., object],
    spawn_api: Callable[..., Any],
    s3_env: Callable[..., dict[str, str]],
    object_store: ObjectStore,
) -> Iterator[tuple[httpx.Client, redis.Redis]]:
    env = {**s3_env(object_store.prefix), "ANIMEGAN_THREADS": "1"}
    spawn_worker(redis_url, ANIMEGAN_SWEEP_INTERVAL_S="0.5", **env)
    api = spawn_api(redis_url, ANIMEGAN_RESULT_TTL_S="120", **env)
    with httpx.Client(base_url=api.base, timeout=60) as http, redis.Redis.from_url(redis_url) as client:
        yield http, client


def test_a_clip_lives_in_the_bucket_and_its_link_serves_what_the_gateway_serves(
    stack: tuple[httpx.Client, redis.Redis], object_store: ObjectStore, clip: Make
) -> None:
    http, client = stack
    data = clip(frames=50, rate=Fraction(25), gop=10)
    largest: list[tuple[int, str]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            largest.append(largest_value(client))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        answer = http.post("/videos", files={"video": ("c.mp4", data, "video/mp4")})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        assert object_store.get(input_name(job_id)) == data  # the upload, whole, in the bucket
        assert client.exists(clip_chunk_key(job_id, 0)) == 0
        body = wait_done(http, job_id)
    finally:
        stop.set()
        sampler.join()
    assert body["status"] == "succeeded", body
    assert max(largest)[0] <= MAX_VALUE_BYTES, max(largest)
    through_gateway = http.get(f"/jobs/{job_id}/result")
    assert through_gateway.status_code == 200
    assert through_gateway.headers["content-type"] == "video/mp4"
    assert through_gateway.content == object_store.get(result_name(job_id))
    direct = httpx.get(body["links"]["download"])
    assert direct.status_code == 200
    assert direct.content == through_gateway.content
    assert probe(direct.content).frame_count == probe(data).frame_count
    segments = [f"{job_id}-s{n}" for n in range(len(body["segments"]))]
    # Since the video ended every piece is due for deletion (or the reaper deleted it already).
    for segment in segments:
        scheduled = client.zscore("animegan:blobs:due", piece_name(segment)) is not None
        assert scheduled or object_store.get(piece_name(segment)) is None
    assert http.delete(f"/jobs/{job_id}").status_code == 204
    assert object_store.get(result_name(job_id)) is None
    assert object_store.get(input_name(job_id)) is None
    assert all(object_store.get(piece_name(s)) is None for s in segments)


def test_a_refused_clip_leaves_nothing_in_the_bucket(
    stack: tuple[httpx.Client, redis.Redis], object_store: ObjectStore
) -> None:
    http, client = stack
    answer = http.post("/videos", files={"video": ("c.mp4", b"RIFF" + bytes(300_000), "video/mp4")})
    assert answer.status_code == 415
    assert answer.json()["type"] == "/problems/unsupported-video"
    leftover = [k for k in client.zrange("animegan:blobs:due", 0, -1) if k.startswith(b"input/")]
    assert all(object_store.get(name.decode()) is None for name in leftover)
