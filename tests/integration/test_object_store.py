"""Jobs whose bytes live in a real S3 server (SeaweedFS): the task body, the deletion schedule, the reaper,
the sweeper, faults of the store, and the store layer's own calls and metrics.

The task body (worker.tasks.run_job) is called directly with the real hayao weights, as in
test_task_body.py, on a runtime whose object store is the session's SeaweedFS.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import redis
from PIL import Image
from prometheus_client import REGISTRY

from animegan.seaweedfs_server import SeaweedFS
from imaging.decode import decode_image
from imaging.encode import encode_image
from jobstore.blobs import ObjectBlobs, due_names, input_name, result_link, result_name
from jobstore.keys import BLOBS_DUE_KEY, input_key, job_key, result_key
from jobstore.objectstore import ObjectStore, StoreError
from jobstore.queue import Limits, QueueScripts, admit_call, parse_admitted
from jobstore.records import ErrorCode, JobRecord, JobState, new_job_id
from telemetry.families import observe_store
from worker.blob_reaper import BlobReaper
from worker.config import WorkerSettings
from worker.runtime import Runtime
from worker.sweeper import Sweeper
from worker.tasks import run_job
from worker.webhooks import WebhookSender

WEIGHTS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "weights"
MAX_VALUE_BYTES = 64 * 1024


def largest_value(client: redis.Redis) -> tuple[int, str]:
    """The largest value in the database by MEMORY USAGE, and its key."""
    largest = (0, "")
    for key in client.scan_iter(count=1000):
        size = client.memory_usage(key, samples=0) or 0
        largest = max(largest, (int(size), key.decode()))
    return largest


@pytest.fixture(scope="module")
def loaded_runtime() -> Runtime:
    settings = WorkerSettings(
        weights_dir=WEIGHTS_DIR, styles=["hayao"], default_style="hayao", worker_concurrency=1, threads=1
    )
    runtime = Runtime(settings)
    runtime.load_models()
    return runtime


@pytest.fixture
def runtime(loaded_runtime: Runtime, redis_url: str, object_store: ObjectStore) -> Iterator[Runtime]:
    loaded_runtime.settings.redis_url = redis_url
    loaded_runtime.settings.s3_bucket = "animegan"
    loaded_runtime.settings.store_retry_s = 30.0
    loaded_runtime._redis = redis.Redis.from_url(redis_url)
    loaded_runtime._objects = object_store
    yield loaded_runtime
    loaded_runtime._redis.close()
    loaded_runtime._objects = None
    loaded_runtime.settings.s3_bucket = None


@pytest.fixture(scope="module")
def small_photo(samples_dir: Path) -> Image.Image:
    return decode_image((samples_dir / "astronaut.jpg").read_bytes(), max_side=64).image


def _read(client: redis.Redis, job_id: str) -> JobRecord:
    return JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]


def _due(client: redis.Redis, name: str) -> float | None:
    score = client.zscore(BLOBS_DUE_KEY, name)
    return None if score is None else float(score)


def test_a_job_in_the_store_reads_its_input_and_writes_its_result_there(
    runtime: Runtime, object_store: ObjectStore, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    client = runtime.redis
    record = queue_job(client, small_photo, store=object_store, ttl_s=120)
    assert client.exists(input_key(record.id)) == 0
    assert object_store.get(input_name(record.id)) == small_photo.tobytes()

    assert run_job(runtime, record.id) == "succeeded"

    done = _read(client, record.id)
    assert done.state is JobState.SUCCEEDED
    result = object_store.get(result_name(record.id))
    assert result == encode_image(runtime.stylizer("hayao").stylize(small_photo), "png")
    assert done.output_bytes == len(result)
    assert client.exists(result_key(record.id)) == 0
    # The input is due now (the reaper deletes it), the result when its TTL passes.
    finished = done.finished_at or 0
    assert (_due(client, input_name(record.id)) or 1e18) <= finished + 1
    assert _due(client, result_name(record.id)) == pytest.approx(finished + record.result_ttl_s, abs=2)
    size, key = largest_value(client)
    assert size <= MAX_VALUE_BYTES, key


def test_the_presigned_link_serves_the_result_without_credentials_until_it_expires(
    object_store: ObjectStore,
) -> None:
    object_store.put(result_name("link-test"), b"\x89PNG result bytes", "image/png")
    url = object_store.sign(result_name("link-test"), 2)
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.content == b"\x89PNG result bytes"
    assert answer.headers["content-type"] == "image/png"
    # Another byte in the signature, or another key under the same signature: refused.
    signature = url.rsplit("=", 1)[1]
    tampered = url[: -len(signature)] + ("0" if signature[0] != "0" else "1") + signature[1:]
    assert httpx.get(tampered).status_code == 403
    assert httpx.get(url.replace("link-test", "link-tesu")).status_code == 403
    time.sleep(3.2)
    assert httpx.get(url).status_code == 403


def test_the_reaper_deletes_what_is_due_and_keeps_what_is_not(
    redis_url: str, object_store: ObjectStore, seaweedfs: SeaweedFS
) -> None:
    client = redis.Redis.from_url(redis_url)
    for name in ("input/a", "result/a", "result/b"):
        object_store.put(name, b"x" * 1000, "application/octet-stream")
    client.zadd(BLOBS_DUE_KEY, {"input/a": time.time() - 1, "result/a": time.time() - 1, "result/b": time.time() + 60})
    reaper = BlobReaper(client, object_store, holder="test:1", interval_s=1.0)
    assert reaper.tick() == 2
    assert object_store.get("input/a") is None
    assert object_store.get("result/a") is None
    assert object_store.get("result/b") == b"x" * 1000
    assert due_names(client, time.time() + 120) == ["result/b"]
    # Another reaper holds the lock meanwhile: this one does nothing.
    other = BlobReaper(client, object_store, holder="test:2", interval_s=1.0)
    client.zadd(BLOBS_DUE_KEY, {"result/b": time.time() - 1})
    assert other.tick() == 0
    assert reaper.tick() == 1
    assert object_store.get("result/b") is None


def test_a_deletion_that_fails_while_the_store_is_down_stays_due_and_happens_when_it_returns(
    redis_url: str, seaweedfs: SeaweedFS, object_store: ObjectStore
) -> None:
    client = redis.Redis.from_url(redis_url)
    object_store.put("result/down", b"x", "image/png")
    client.zadd(BLOBS_DUE_KEY, {"result/down": time.time() - 1})
    reaper = BlobReaper(client, object_store, holder="test:1", interval_s=1.0)
    seaweedfs.kill()
    try:
        started = time.monotonic()
        assert reaper.tick() == 0
        assert time.monotonic() - started < 15
        assert due_names(client, time.time()) == ["result/down"]
    finally:
        seaweedfs.start()
    assert reaper.tick() == 1
    assert object_store.get("result/down") is None


def test_the_sweeper_fails_a_waiting_job_whose_input_came_due(
    runtime: Runtime, object_store: ObjectStore, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    client = runtime.redis
    kept = queue_job(client, small_photo, store=object_store, ttl_s=120)
    expired = queue_job(client, small_photo, store=object_store, ttl_s=120)
    client.zadd(BLOBS_DUE_KEY, {input_name(expired.id): time.time() - 1})
    sweeper = Sweeper(client, lambda job_id: None, holder="test:1", interval_s=1.0, max_attempts=3)
    sweeper.fail_expired_inputs()
    failed = _read(client, expired.id)
    assert failed.state is JobState.FAILED
    assert failed.error_code is ErrorCode.INPUT_EXPIRED
    assert _read(client, kept.id).state is JobState.QUEUED


def test_an_input_gone_from_the_store_fails_the_job_input_expired(
    runtime: Runtime, object_store: ObjectStore, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, small_photo, store=object_store)
    object_store.delete([input_name(record.id)])
    assert run_job(runtime, record.id) == "failed"
    assert _read(runtime.redis, record.id).error_code is ErrorCode.INPUT_EXPIRED


def test_a_job_rides_out_a_store_restart_and_is_handed_back_when_the_store_stays_away(
    runtime: Runtime,
    object_store: ObjectStore,
    seaweedfs: SeaweedFS,
    small_photo: Image.Image,
    queue_job: Callable[..., JobRecord],
) -> None:
    client = runtime.redis
    record = queue_job(client, small_photo, store=object_store)
    seaweedfs.kill()
    restarted: list[float] = []

    def restart_later() -> None:
        time.sleep(3)
        seaweedfs.start()
        restarted.append(time.monotonic())

    import threading

    thread = threading.Thread(target=restart_later)
    thread.start()
    try:
        assert run_job(runtime, record.id) == "succeeded"
    finally:
        thread.join()
    assert restarted
    assert object_store.get(result_name(record.id)) is not None

    # Gone for longer than ANIMEGAN_STORE_RETRY_S: the job stays running, leased, for the sweeper.
    second = queue_job(client, small_photo, store=object_store)
    runtime.settings.store_retry_s = 2.0
    seaweedfs.kill()
    try:
        assert run_job(runtime, second.id) == "handed-back"
    finally:
        seaweedfs.start()
    left = _read(client, second.id)
    assert left.state is JobState.RUNNING
    assert client.zscore("animegan:leases", second.id) is not None


def test_a_succeeded_job_in_the_store_answers_an_identical_request_while_its_result_is_due_later(
    runtime: Runtime, object_store: ObjectStore, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    client = runtime.redis
    record = queue_job(client, small_photo, store=object_store)
    assert run_job(runtime, record.id) == "succeeded"

    def admit() -> str:
        twin = record.model_copy(update={"id": new_job_id(), "state": JobState.QUEUED})
        keys, args = admit_call(twin, b"", Limits(100, 100), None, record.digest)
        admitted = parse_admitted(QueueScripts(client).admit(keys=keys, args=args))
        return f"{admitted.outcome}:{admitted.job_id == record.id}"

    assert admit() == "deduplicated:True"
    client.zadd(BLOBS_DUE_KEY, {result_name(record.id): time.time() - 1})  # its deletion came due
    assert admit() == "created:False"


def test_store_calls_are_counted_by_op_and_outcome(seaweedfs: SeaweedFS, object_store: ObjectStore) -> None:
    store = ObjectStore(
        object_store_settings(object_store, seaweedfs), observe=observe_store, credentials=seaweedfs.credentials
    )

    def count(op: str, outcome: str) -> float:
        return REGISTRY.get_sample_value("animegan_store_operations_total", {"op": op, "outcome": outcome}) or 0.0

    before = {(op, out): count(op, out) for op in ("put", "get") for out in ("ok", "not_found", "error")}
    store.put("metrics/a", b"a", "image/png")
    assert store.get("metrics/a") == b"a"
    assert store.get("metrics/missing") is None
    assert count("put", "ok") == before["put", "ok"] + 1
    assert count("get", "ok") == before["get", "ok"] + 1
    assert count("get", "not_found") == before["get", "not_found"] + 1
    assert (REGISTRY.get_sample_value("animegan_store_operation_seconds_count", {"op": "put"}) or 0) >= 1
    seaweedfs.kill()
    try:
        with pytest.raises(StoreError):
            store.get("metrics/a")
    finally:
        seaweedfs.start()
    assert count("get", "error") == before["get", "error"] + 1


def object_store_settings(store: ObjectStore, server: SeaweedFS) -> WorkerSettings:
    return WorkerSettings(s3_bucket="animegan", s3_endpoint_url=server.endpoint, s3_prefix=store.prefix)


def test_object_blobs_schedule_a_result_before_writing_it(
    redis_url: str, object_store: ObjectStore, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    client = redis.Redis.from_url(redis_url)
    record = queue_job(client, small_photo, store=object_store, ttl_s=90)
    blobs = ObjectBlobs(client, object_store)
    buffer = io.BytesIO()
    small_photo.save(buffer, "PNG")
    assert blobs.write_result(record, buffer.getvalue(), "image/png")
    assert _due(client, result_name(record.id)) == pytest.approx(time.time() + 90, abs=2)
    assert blobs.read_input(record) == small_photo.tobytes()


def test_a_result_link_is_capped_by_the_result_ttl_and_webhook_bodies_carry_it(
    runtime: Runtime, object_store: ObjectStore, small_photo: Image.Image, queue_job: Callable[..., JobRecord]
) -> None:
    record = queue_job(runtime.redis, small_photo, store=object_store, ttl_s=60)
    assert run_job(runtime, record.id) == "succeeded"
    done = _read(runtime.redis, record.id)
    assert done.finished_at is not None
    long_link = result_link(object_store, done, url_ttl_s=3600)
    assert long_link is not None
    assert long_link.expires_at == pytest.approx(done.finished_at + 60, abs=0.01)  # the result TTL, not 3600 s
    short_link = result_link(object_store, done, url_ttl_s=30)
    assert short_link is not None
    assert short_link.expires_at == pytest.approx(time.time() + 30, abs=2)
    assert result_link(object_store, done, url_ttl_s=3600, at=done.finished_at + 58) is None  # too close to the end

    settings = WorkerSettings(s3_bucket="animegan", s3_url_ttl_s=600)
    sender = WebhookSender(settings, runtime.redis, None, object_store)  # type: ignore[arg-type]
    body = json.loads(sender.render(record.id) or b"{}")
    answer = httpx.get(body["links"]["download"])
    assert answer.status_code == 200
    assert answer.content == object_store.get(result_name(record.id))
    expires = datetime.fromisoformat(body["links"]["download_expires_at"]).timestamp()
    assert expires == pytest.approx(done.finished_at + 60, abs=0.01)
    # A job of the Redis store has no download link.
    plain = queue_job(runtime.redis, small_photo)
    assert run_job(runtime, plain.id) == "succeeded"
    assert json.loads(sender.render(plain.id) or b"{}")["links"]["download"] is None
