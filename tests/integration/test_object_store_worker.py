"""A real Celery worker (the production command) with its bytes in a real S3 server (SeaweedFS).

Start-up checks (a missing bucket, refused credentials: one line, exit status not 0), jobs whose
inputs and results never enter Redis (no Redis value over 64 KiB, sampled while they run and after),
the reaper deleting inputs as jobs end, and the store killed while jobs run: none is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from PIL import Image

from animegan.seaweedfs_server import SeaweedFS
from jobstore.blobs import input_name, result_name
from jobstore.keys import job_key
from jobstore.objectstore import ObjectStore
from jobstore.records import JobRecord, JobState

MAX_VALUE_BYTES = 64 * 1024


def largest_value(client: redis.Redis) -> tuple[int, str]:
    largest = (0, "")
    for key in client.scan_iter(count=1000):
        size = client.memory_usage(key, samples=0) or 0
        largest = max(largest, (int(size), key.decode()))
    return largest


def wait_for_states(client: redis.Redis, ids: list[str], timeout_s: float) -> dict[str, JobRecord]:
    deadline = time.monotonic() + timeout_s
    while True:
        records = {i: JobRecord.from_hash(client.hgetall(job_key(i))) for i in ids}  # type: ignore[arg-type]
        if all(r.state.terminal for r in records.values()) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def photo_of(samples_dir: Path, side: int, shade: int) -> Image.Image:
    with Image.open(samples_dir / "chelsea.jpg") as img:
        image = img.convert("RGB").resize((side, side * 2 // 3))
    image.paste((shade, 255 - shade, 128), (0, 0, 8, 8))
    return image


@pytest.mark.parametrize(
    ("bucket", "secret", "reason"),
    [
        ("missing-bucket", None, "bucket 'missing-bucket' does not exist"),
        ("animegan", "wrong", "refused our credentials"),
    ],
)
def test_the_worker_refuses_to_start_with_one_line_when_the_bucket_refuses_it(
    redis_url: str,
    spawn_worker: Callable[..., object],
    s3_env: Callable[..., dict[str, str]],
    tmp_path: Path,
    bucket: str,
    secret: str | None,
    reason: str,
) -> None:
    env = s3_env("refused", bucket=bucket)
    if secret is not None:
        env["AWS_SECRET_ACCESS_KEY"] = secret
    log = tmp_path / "worker.log"
    process = spawn_worker(redis_url, wait=False, log=log, **env)
    assert process.wait(120) != 0  # type: ignore[attr-defined]
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("animegan worker: object store: ")
    assert reason in last


def test_jobs_run_with_their_bytes_in_the_store_and_redis_holds_no_large_value(
    redis_url: str,
    spawn_worker: Callable[..., object],
    s3_env: Callable[..., dict[str, str]],
    object_store: ObjectStore,
    seaweedfs: SeaweedFS,
    samples_dir: Path,
    queue_job: Callable[..., JobRecord],
) -> None:
    spawn_worker(redis_url, ANIMEGAN_SWEEP_INTERVAL_S="0.5", **s3_env(object_store.prefix))
    client = redis.Redis.from_url(redis_url)
    largest: list[tuple[int, str]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            largest.append(largest_value(client))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        jobs = [queue_job(client, photo_of(samples_dir, 256, n * 40), store=object_store) for n in range(4)]
        records = wait_for_states(client, [j.id for j in jobs], 180)
    finally:
        stop.set()
        sampler.join()
    assert all(r.state is JobState.SUCCEEDED for r in records.values()), records
    assert largest, "the sampler took no sample"
    assert max(largest)[0] <= MAX_VALUE_BYTES, max(largest)
    assert largest_value(client)[0] <= MAX_VALUE_BYTES
    for job in jobs:
        result = object_store.get(result_name(job.id))
        assert result is not None
        assert result.startswith(b"\x89PNG")
        assert records[job.id].output_bytes == len(result)
    # The reaper (every 0.5 s here) deletes each input once its job ended.
    deadline = time.monotonic() + 20
    while any(object_store.get(input_name(j.id)) is not None for j in jobs) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert all(object_store.get(input_name(j.id)) is None for j in jobs)


def test_jobs_running_when_the_store_dies_end_once_it_returns_and_none_is_lost(
    redis_url: str,
    spawn_worker: Callable[..., object],
    s3_env: Callable[..., dict[str, str]],
    object_store: ObjectStore,
    seaweedfs: SeaweedFS,
    samples_dir: Path,
    queue_job: Callable[..., JobRecord],
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.log"
    spawn_worker(redis_url, log=log, ANIMEGAN_STORE_RETRY_S="30", ANIMEGAN_LEASE_S="5", **s3_env(object_store.prefix))
    client = redis.Redis.from_url(redis_url)
    jobs = [queue_job(client, photo_of(samples_dir, 384, n * 30), store=object_store) for n in range(6)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = [client.hget(job_key(j.id), "state") for j in jobs]
        if b"succeeded" in states:
            break
        time.sleep(0.1)
    seaweedfs.kill()
    time.sleep(6)
    seaweedfs.start()
    records = wait_for_states(client, [j.id for j in jobs], 240)
    assert [r.state for r in records.values()] == [JobState.SUCCEEDED] * len(jobs), records
    assert "job store unreachable; retrying" in log.read_text(), "no job met the outage"
    for job in jobs:
        assert object_store.get(result_name(job.id)) is not None


def test_pool_children_forked_after_jobs_ran_still_reach_the_store(
    redis_url: str,
    spawn_worker: Callable[..., object],
    s3_env: Callable[..., dict[str, str]],
    object_store: ObjectStore,
    samples_dir: Path,
    queue_job: Callable[..., JobRecord],
) -> None:
    # Each child runs one job and is replaced by a fresh fork of the main process. obstore is not
    # fork-safe: had the main process (sweeper, start-up check) made one store call, these later
    # children would hang on their first read.
    spawn_worker(redis_url, ANIMEGAN_MAX_TASKS_PER_CHILD="1", **s3_env(object_store.prefix))
    client = redis.Redis.from_url(redis_url)
    jobs = [queue_job(client, photo_of(samples_dir, 128, n * 50), store=object_store) for n in range(3)]
    records = wait_for_states(client, [j.id for j in jobs], 180)
    assert [r.state for r in records.values()] == [JobState.SUCCEEDED] * 3, records
    assert len({r.holder for r in records.values()}) == 3  # three different child processes
