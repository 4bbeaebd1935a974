"""The gateway with its images in a real S3 server (SeaweedFS): the production API command as a process,
a real worker, real HTTP.

Submissions stream the normalized input to the store and Redis holds no value over 64 KiB; the job
carries a presigned link whose bytes equal GET /jobs/{id}/result (and a 303 to it with
ANIMEGAN_RESULT_REDIRECT); DELETE removes the objects; batch zips come from the store; the store
killed: submissions answer 503 with Retry-After within seconds, and no job is lost once it is back;
HEIC in, AVIF out; a missing bucket stops the gateway with one line.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from PIL import Image

from animegan.redis_server import free_port
from animegan.seaweedfs_server import SeaweedFS
from animegan.serve import api_command
from imaging.heif import register_decoder
from jobstore.blobs import input_name, result_name
from jobstore.keys import BLOBS_DUE_KEY, input_key, result_key
from jobstore.objectstore import ObjectStore

MAX_VALUE_BYTES = 64 * 1024


def largest_value(client: redis.Redis) -> tuple[int, str]:
    largest = (0, "")
    for key in client.scan_iter(count=1000):
        size = client.memory_usage(key, samples=0) or 0
        largest = max(largest, (int(size), key.decode()))
    return largest


def heic(image: Image.Image) -> bytes:
    register_decoder()
    buffer = io.BytesIO()
    image.save(buffer, "HEIF", quality=90)
    return buffer.getvalue()


def wait_done(http: httpx.Client, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
        if body["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


@pytest.fixture
def stack(
    redis_url: str,
    spawn_worker: Callable[..., object],
    spawn_api: Callable[..., Any],
    s3_env: Callable[..., dict[str, str]],
    object_store: ObjectStore,
) -> Iterator[tuple[httpx.Client, redis.Redis, Any]]:
    env = s3_env(object_store.prefix)
    spawn_worker(redis_url, ANIMEGAN_SWEEP_INTERVAL_S="0.5", **env)
    api = spawn_api(redis_url, ANIMEGAN_RESULT_TTL_S="120", **env)
    with httpx.Client(base_url=api.base, timeout=30) as http, redis.Redis.from_url(redis_url) as client:
        yield http, client, api


def test_a_job_keeps_its_bytes_in_the_store_and_its_link_serves_what_the_gateway_serves(
    stack: tuple[httpx.Client, redis.Redis, Any], object_store: ObjectStore, photo: Callable[[], bytes]
) -> None:
    http, client, _ = stack
    largest: list[tuple[int, str]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            largest.append(largest_value(client))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        answer = http.post("/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        assert answer.json()["links"].get("download") is None  # nothing to download yet
        assert client.exists(input_key(job_id)) == 0
        body = wait_done(http, job_id)
    finally:
        stop.set()
        sampler.join()
    assert body["status"] == "succeeded", body
    assert max(largest)[0] <= MAX_VALUE_BYTES, max(largest)
    assert largest_value(client)[0] <= MAX_VALUE_BYTES
    assert client.exists(result_key(job_id)) == 0

    through_gateway = http.get(f"/jobs/{job_id}/result")
    assert through_gateway.status_code == 200
    assert through_gateway.content == object_store.get(result_name(job_id))
    assert int(through_gateway.headers["content-length"]) == len(through_gateway.content)
    link = body["links"]["download"]
    assert link.startswith(object_store.endpoint or "")
    direct = httpx.get(link)  # no credentials, no API key: the signature is the permission
    assert direct.status_code == 200
    assert direct.content == through_gateway.content
    assert direct.headers["content-type"] == "image/png"
    finished = time.time()
    expires = body["links"]["download_expires_at"]
    assert expires is not None
    assert datetime.fromisoformat(expires).timestamp() <= finished + 120  # never past the result TTL
    assert httpx.get(link.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403


def test_delete_removes_the_objects_at_once(
    stack: tuple[httpx.Client, redis.Redis, Any], object_store: ObjectStore, photo: Callable[[], bytes]
) -> None:
    http, client, _ = stack
    job_id = http.post("/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")}).json()["id"]
    assert wait_done(http, job_id)["status"] == "succeeded"
    assert object_store.get(result_name(job_id)) is not None
    assert http.delete(f"/jobs/{job_id}").status_code == 204
    assert object_store.get(result_name(job_id)) is None
    assert object_store.get(input_name(job_id)) is None
    assert client.zscore(BLOBS_DUE_KEY, result_name(job_id)) is None


def test_heic_in_and_avif_out(
    stack: tuple[httpx.Client, redis.Redis, Any], object_store: ObjectStore, samples_dir: Path
) -> None:
    http, _, _ = stack
    with Image.open(samples_dir / "chelsea.jpg") as img:
        upload = heic(img.convert("RGB").resize((300, 200)))
    answer = http.post("/stylize", files={"image": ("p.heic", upload, "image/heic")}, data={"format": "avif"})
    assert answer.status_code == 202, answer.text
    body = wait_done(http, answer.json()["id"])
    assert body["status"] == "succeeded", body
    assert body["input"]["original_width"] == 300
    result = http.get(f"/jobs/{body['id']}/result")
    assert result.headers["content-type"] == "image/avif"
    assert result.content[4:12] == b"ftypavif"
    with Image.open(io.BytesIO(result.content)) as image:
        assert image.size == (body["output"]["width"], body["output"]["height"])


def test_a_heic_declaring_huge_dimensions_is_refused_422_before_decoding(
    stack: tuple[httpx.Client, redis.Redis, Any],
) -> None:
    http, _, _ = stack
    data = bytearray(heic(Image.new("RGB", (64, 32), (200, 100, 50))))
    at = data.find(b"ispe")
    while at > 0:
        data[at + 8 : at + 16] = (60_000).to_bytes(4, "big") + (50_000).to_bytes(4, "big")
        at = data.find(b"ispe", at + 4)
    answer = http.post("/stylize", files={"image": ("bomb.heic", bytes(data), "image/heic")})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "/problems/too-many-pixels"


def test_batch_zips_come_from_the_store(
    stack: tuple[httpx.Client, redis.Redis, Any], object_store: ObjectStore, photo: Callable[[], bytes]
) -> None:
    http, _, _ = stack
    files = [("image", ("a.jpg", photo(), "image/jpeg")), ("image", ("b.jpg", photo(), "image/jpeg"))]
    batch = http.post("/batches", files=files).json()
    deadline = time.monotonic() + 120
    while batch["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.3)
        batch = http.get(f"/batches/{batch['id']}").json()
    assert batch["counts"]["succeeded"] == 2, batch
    archive = zipfile.ZipFile(io.BytesIO(http.get(f"/batches/{batch['id']}/results.zip").content))
    stored = {
        item["filename"].rsplit(".", 1)[0]: object_store.get(result_name(item["job"]["id"])) for item in batch["jobs"]
    }
    assert {name.rsplit(".", 1)[0]: archive.read(name) for name in archive.namelist()} == stored


def test_with_redirect_the_result_route_answers_303_to_the_link(
    redis_url: str,
    spawn_api: Callable[..., Any],
    s3_env: Callable[..., dict[str, str]],
    object_store: ObjectStore,
    spawn_worker: Callable[..., object],
    photo: Callable[[], bytes],
) -> None:
    env = s3_env(object_store.prefix)
    spawn_worker(redis_url, **env)
    api = spawn_api(redis_url, ANIMEGAN_RESULT_REDIRECT="true", **env)
    with httpx.Client(base_url=api.base, timeout=30) as http:
        job_id = http.post("/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")}).json()["id"]
        assert wait_done(http, job_id)["status"] == "succeeded"
        answer = http.get(f"/jobs/{job_id}/result")
        assert answer.status_code == 303
        followed = httpx.get(answer.headers["location"])
        assert followed.status_code == 200
        assert followed.content == object_store.get(result_name(job_id))


def test_the_store_down_makes_submissions_503_within_seconds_and_no_job_is_lost(
    stack: tuple[httpx.Client, redis.Redis, Any], seaweedfs: SeaweedFS, photo: Callable[[], bytes]
) -> None:
    http, _, _ = stack
    ids = [http.post("/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")}).json()["id"] for _ in range(3)]
    seaweedfs.kill()
    try:
        for path, files in (
            ("/stylize", {"image": ("p.jpg", photo(), "image/jpeg")}),
            ("/batches", [("image", ("a.jpg", photo(), "image/jpeg"))]),
        ):
            started = time.monotonic()
            answer = http.post(path, files=files)  # type: ignore[arg-type]
            assert time.monotonic() - started < 8, path
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["type"] == "/problems/store-unavailable"
            assert int(answer.headers["retry-after"]) >= 1
        time.sleep(3)
    finally:
        seaweedfs.start()
    for job_id in ids:
        assert wait_done(http, job_id, 240)["status"] == "succeeded", job_id
    after = http.post("/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")})
    assert after.status_code == 202


def test_a_missing_bucket_stops_the_gateway_with_one_line(
    redis_url: str, s3_env: Callable[..., dict[str, str]], service_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = service_env(ANIMEGAN_REDIS_URL=redis_url, **s3_env("x", bucket="no-such-bucket"))
    done = subprocess.run(
        [*api_command("127.0.0.1", free_port())], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "bucket 'no-such-bucket' does not exist" in last


def test_a_result_is_streamed_from_the_store_in_bounded_memory(
    stack: tuple[httpx.Client, redis.Redis, Any], object_store: ObjectStore, photo: Callable[[], bytes]
) -> None:
    http, _, api = stack
    job_id = http.post("/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")}).json()["id"]
    assert wait_done(http, job_id)["status"] == "succeeded"
    big = os.urandom(1024 * 1024) * 64  # 64 MiB under the result's name: far more than any image
    object_store.put(result_name(job_id), big, "image/png")
    gateway = psutil.Process(api.process.pid)
    before = gateway.memory_info().rss
    peak = before
    received = 0
    with http.stream("GET", f"/jobs/{job_id}/result") as answer:
        assert answer.status_code == 200
        assert int(answer.headers["content-length"]) == len(big)
        for chunk in answer.iter_bytes(256 * 1024):
            received += len(chunk)
            time.sleep(0.002)  # a client slower than the store: the gateway must not buffer ahead
            peak = max(peak, gateway.memory_info().rss)
    assert received == len(big)
    assert peak - before < 24 * 1024 * 1024, (before, peak)
