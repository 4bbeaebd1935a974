"""The task body (worker.tasks.run_job) against a real Redis with the real hayao weights.

Called directly, without Celery, to reach every path: success, a repeated delivery, the write-once
result, an expired input, a job that keeps killing workers, missing weights, corrupt input.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from imaging.decode import decode_image
from imaging.encode import encode_image
from jobstore.keys import SERVICE_TIME_KEY, input_key, job_key, result_key
from jobstore.records import ErrorCode, JobRecord, JobState, new_job_id
from worker.config import WorkerSettings
from worker.runtime import Runtime
from worker.tasks import run_job

WEIGHTS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "weights"


@pytest.fixture(scope="module")
def loaded_runtime() -> Runtime:
    settings = WorkerSettings(
        weights_dir=WEIGHTS_DIR, styles=["hayao"], default_style="hayao", worker_concurrency=1, threads=1
    )
    runtime = Runtime(settings)
    runtime.load_models()
    return runtime


@pytest.fixture
def runtime(loaded_runtime: Runtime, redis_url: str) -> Iterator[Runtime]:
    loaded_runtime.settings.redis_url = redis_url
    loaded_runtime._redis = redis.Redis.from_url(redis_url)
    yield loaded_runtime
    loaded_runtime._redis.close()


@pytest.fixture(scope="module")
def small_photo(samples_dir: Path) -> Image.Image:
    return decode_image((samples_dir / "astronaut.jpg").read_bytes(), max_side=64).image


def _read(runtime: Runtime, job_id: str) -> JobRecord:
    return JobRecord.from_hash(runtime.redis.hgetall(job_key(job_id)))  # type: ignore[arg-type]


def test_job_runs_and_stores_the_same_image_as_a_direct_run(
    runtime: Runtime, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, small_photo)
    assert run_job(runtime, record.id) == "succeeded"
    done = _read(runtime, record.id)
    assert done.state is JobState.SUCCEEDED
    assert (done.output_width, done.output_height) == small_photo.size
    assert done.inference_s is not None
    assert done.queue_s is not None
    assert done.attempts == 1
    result = runtime.redis.get(result_key(record.id))
    assert isinstance(result, bytes)
    assert done.output_bytes == len(result)
    direct = encode_image(runtime.stylizer("hayao").stylize(small_photo), "png")
    assert result == direct
    assert runtime.redis.exists(input_key(record.id)) == 0
    assert float(runtime.redis.get(SERVICE_TIME_KEY)) > 0  # type: ignore[arg-type]


def test_a_repeated_delivery_of_a_finished_job_does_nothing(
    runtime: Runtime, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, small_photo)
    run_job(runtime, record.id)
    before = runtime.redis.get(result_key(record.id))
    assert run_job(runtime, record.id) == "skipped"
    assert runtime.redis.get(result_key(record.id)) == before
    assert _read(runtime, record.id).attempts == 1


def test_the_result_is_written_once(
    runtime: Runtime, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, small_photo)
    runtime.redis.set(result_key(record.id), b"written by an earlier delivery")
    assert run_job(runtime, record.id) == "succeeded"
    assert runtime.redis.get(result_key(record.id)) == b"written by an earlier delivery"


def test_expired_input_fails_the_job(
    runtime: Runtime, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, small_photo)
    runtime.redis.delete(input_key(record.id))
    assert run_job(runtime, record.id) == "failed"
    failed = _read(runtime, record.id)
    assert failed.error_code is ErrorCode.INPUT_EXPIRED
    assert failed.error_detail


def test_a_job_that_keeps_killing_workers_ends_failed(
    runtime: Runtime, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, small_photo)
    # As if every earlier delivery had died with its worker.
    runtime.redis.hset(job_key(record.id), "attempts", runtime.settings.max_attempts)
    assert run_job(runtime, record.id) == "failed"
    failed = _read(runtime, record.id)
    assert failed.error_code is ErrorCode.WORKER_LOST
    assert str(runtime.settings.max_attempts) in (failed.error_detail or "")
    assert runtime.redis.exists(result_key(record.id)) == 0


def test_missing_record_is_dropped(runtime: Runtime) -> None:
    assert run_job(runtime, new_job_id()) == "skipped"


def test_style_without_weights_fails_with_how_to_supply_them(
    runtime: Runtime, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, small_photo, style="paprika")
    assert run_job(runtime, record.id) == "failed"
    failed = _read(runtime, record.id)
    assert failed.error_code is ErrorCode.MODEL_UNAVAILABLE
    assert "paprika" in (failed.error_detail or "")


def test_corrupt_input_fails_with_a_generic_message(
    runtime: Runtime, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, small_photo, raw=b"\x00" * 10)
    assert run_job(runtime, record.id) == "failed"
    failed = _read(runtime, record.id)
    assert failed.error_code is ErrorCode.INTERNAL_ERROR
    assert failed.error_detail == "The worker hit an unexpected error."


def test_result_decodes_to_an_rgb_image_of_the_input_size(
    runtime: Runtime, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, small_photo)
    run_job(runtime, record.id)
    data = runtime.redis.get(result_key(record.id))
    with Image.open(io.BytesIO(data)) as out:  # type: ignore[arg-type]
        assert out.format == "PNG"
        assert out.mode == "RGB"
        assert out.size == small_photo.size
        assert np.asarray(out).std() > 5  # a picture, not a flat fill
