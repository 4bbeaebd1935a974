"""Process facts of the real worker: the model lives in the pool child, never in the parent."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import redis
from PIL import Image

from api.config import ApiSettings
from api.jobs.sender import create_celery_client
from imaging.decode import decode_image
from jobstore.heartbeats import live_heartbeats
from jobstore.keys import TASK_NAME, WORKERS_KEY, job_key, result_key
from jobstore.records import ErrorCode, JobRecord, JobState
from worker.config import available_cores

RUNTIME_LIBRARIES = ("libtorch", "onnxruntime", "libopenvino", "libdnnl")


def _mapped(pid: int) -> set[str]:
    paths = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6:
            paths.add(parts[5])
    return {p for p in paths if any(lib in p for lib in RUNTIME_LIBRARIES)}


def test_the_model_is_loaded_in_the_pool_child_not_in_the_parent(
    celery_worker: subprocess.Popen[bytes], worker_redis_url: str
) -> None:
    with redis.Redis.from_url(worker_redis_url) as client:
        beats = live_heartbeats(client.hgetall(WORKERS_KEY))  # type: ignore[arg-type]
    main = psutil.Process(celery_worker.pid)
    children = {c.pid for c in main.children(recursive=True)}
    assert len(beats) == 1
    beat = beats[0]
    assert beat.pid in children  # the heartbeat comes from a pool child, after its model loaded
    assert beat.styles == ["hayao"]
    assert beat.threads == available_cores()  # one child: it gets every core
    assert _mapped(beat.pid), "the child should have the inference runtime mapped"
    assert not _mapped(celery_worker.pid), "the parent must never load the inference runtime"


def test_one_child_per_core_is_not_pinned_when_there_are_fewer_children(
    celery_worker: subprocess.Popen[bytes], worker_redis_url: str
) -> None:
    with redis.Redis.from_url(worker_redis_url) as client:
        beat = live_heartbeats(client.hgetall(WORKERS_KEY))[0]  # type: ignore[arg-type]
    assert os.sched_getaffinity(beat.pid) == os.sched_getaffinity(celery_worker.pid)


def test_a_threads_pool_worker_loads_in_its_main_process_and_runs_jobs(
    redis_url: str,
    samples_dir: Path,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    queue_job: Callable[..., JobRecord],
) -> None:
    # The last --pool wins: this overrides the production command's prefork.
    process = spawn_worker(redis_url, ["--pool", "threads"])
    with redis.Redis.from_url(redis_url) as client:
        beat = live_heartbeats(client.hgetall(WORKERS_KEY))[0]  # type: ignore[arg-type]
        assert beat.pid == process.pid
        record = queue_job(
            client, decode_image((samples_dir / "coffee.jpg").read_bytes(), max_side=48).image, fmt="jpeg"
        )
        create_celery_client(ApiSettings(redis_url=redis_url)).send_task(TASK_NAME, args=[record.id])
        done = _wait_until_finished(client, record.id)
        assert done.state is JobState.SUCCEEDED
        assert client.exists(result_key(record.id)) == 1


def test_a_job_over_the_soft_time_limit_fails_as_a_timeout_and_the_worker_goes_on(
    redis_url: str, spawn_worker: Callable[..., subprocess.Popen[bytes]], queue_job: Callable[..., JobRecord]
) -> None:
    limits = {"ANIMEGAN_TASK_SOFT_TIME_LIMIT_S": "1", "ANIMEGAN_TASK_TIME_LIMIT_S": "30"}
    spawn_worker(redis_url, [], ANIMEGAN_THREADS="1", **limits)
    sender = create_celery_client(ApiSettings(redis_url=redis_url))
    with redis.Redis.from_url(redis_url) as client:
        # 2048 x 1536 takes tens of seconds on one thread: far past the 1 s soft limit.
        slow = queue_job(client, Image.new("RGB", (2048, 1536), (120, 90, 60)), fmt="jpeg")
        sender.send_task(TASK_NAME, args=[slow.id])
        timed_out = _wait_until_finished(client, slow.id)
        assert (timed_out.state, timed_out.error_code) == (JobState.FAILED, ErrorCode.INFERENCE_TIMEOUT)
        assert timed_out.error_detail == "Inference took longer than 1 s."
        small = queue_job(client, Image.new("RGB", (32, 24), (10, 200, 30)), fmt="jpeg")
        sender.send_task(TASK_NAME, args=[small.id])
        assert _wait_until_finished(client, small.id).state is JobState.SUCCEEDED


def _wait_until_finished(client: redis.Redis, job_id: str, timeout_s: float = 120.0) -> JobRecord:
    deadline = time.monotonic() + timeout_s
    while True:
        record = JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]
        if record.state.terminal:
            return record
        assert time.monotonic() < deadline, f"job still {record.state.value}"
        time.sleep(0.1)
