"""Video jobs in the job store, run by the task body (worker.tasks.run_job) against a real Redis with the real
hayao weights, without Celery: admission all or none, segments and join, progress, the fair queue, leases,
expired clips, undecodable frames, parts of an ended video, DELETE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from api.jobs.forget import forget_job
from jobstore.keys import LEASES_KEY, WAITING_KEY, client_active_key, clip_chunk_key, clip_info_key, job_key
from jobstore.queue import claim_call, expire_call, parse_claimed
from jobstore.records import ErrorCode, JobKind, JobRecord, JobState, now
from jobstore.video_blobs import CHUNK_BYTES, read_info, result_chunks
from jobstore.videos import join_id, read_parts
from video.probe import probe
from worker.config import WorkerSettings
from worker.runtime import Runtime
from worker.sweeper import Sweeper
from worker.tasks import claim, run_job

WEIGHTS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "weights"
Queue = Callable[..., tuple[JobRecord, list[JobRecord], str]]
Make = Callable[..., bytes]


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
    loaded_runtime.sent = []  # type: ignore[attr-defined]
    loaded_runtime.send_token = loaded_runtime.sent.append  # type: ignore[attr-defined,method-assign]
    yield loaded_runtime
    loaded_runtime._redis.close()


def _record(client: redis.Redis, job_id: str) -> JobRecord:
    return JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]


def _drain(runtime: Runtime, limit: int = 20) -> list[str]:
    outcomes = []
    for _ in range(limit):
        outcome = run_job(runtime)
        if outcome == "skipped":
            break
        outcomes.append(outcome)
    return outcomes


def test_a_video_runs_segment_by_segment_then_its_join_and_keeps_every_frame_time(
    runtime: Runtime, queue_video: Queue, clip: Make, redis_url: str
) -> None:
    data = clip(frames=45, gop=10)
    video, segments, outcome = queue_video(runtime.redis, data, seconds=Fraction(1, 2))
    assert outcome == "created"
    assert len(segments) == 3
    assert runtime.redis.llen(WAITING_KEY) == 3
    assert runtime.redis.scard(client_active_key("local")) == 3  # a clip counts as its segments
    assert _drain(runtime) == ["succeeded"] * 4  # three segments, then the join
    assert runtime.sent == [join_id(video.id)]  # the last segment queued the join, with its own message
    done = _record(runtime.redis, video.id)
    assert done.state is JobState.SUCCEEDED
    assert (done.frames_done, done.frames_total, done.segments_done) == (45, 45, 3)
    assert done.inference_s is not None
    assert done.inference_s > 0
    parts = read_parts(runtime.redis, done)
    assert [p.state for p in parts] == [JobState.SUCCEEDED] * 4
    assert {p.worker for p in parts} == {runtime.worker_id}
    output = asyncio.run(_read_result(redis_url, done))
    assert len(output) == done.output_bytes
    source, result = probe(data), probe(output)
    assert result.frame_count == source.frame_count
    assert [p * result.frames.time_base for p in result.frames.pts] == [
        p * source.frames.time_base for p in source.frames.pts
    ]
    assert result.duration == source.duration
    # What the video no longer needs is gone: the clip's chunks, its probe, the pieces; nothing waits.
    assert runtime.redis.exists(clip_chunk_key(video.id, 0), clip_info_key(video.id)) == 0
    assert not runtime.redis.keys("animegan:piece:*")
    assert runtime.redis.llen(WAITING_KEY) == 0
    assert runtime.redis.scard(client_active_key("local")) == 0
    assert 0 < runtime.redis.ttl(job_key(segments[0].id)) <= video.record_ttl_s


async def _read_result(url: str, video: JobRecord) -> bytes:
    async with redis.asyncio.Redis.from_url(url) as client:
        return b"".join([chunk async for chunk in result_chunks(client, video.id, video.output_bytes or 0)])


def test_admission_is_all_or_none_against_the_depth_and_the_quota(
    runtime: Runtime, queue_video: Queue, clip: Make
) -> None:
    data = clip(frames=30)
    _, segments, outcome = queue_video(runtime.redis, data, seconds=Fraction(1, 4), depth=3)
    assert len(segments) == 4
    assert outcome == "queue-full"
    _, _, outcome = queue_video(runtime.redis, data, seconds=Fraction(1, 4), quota=3)
    assert outcome == "client-quota"
    assert runtime.redis.llen(WAITING_KEY) == 0
    assert not runtime.redis.keys("animegan:job:*")
    _, _, outcome = queue_video(runtime.redis, data, seconds=Fraction(1, 4), depth=4, quota=4)
    assert outcome == "created"
    assert runtime.redis.llen(WAITING_KEY) == 4


def test_another_clients_photo_is_claimed_between_a_clips_segments(
    runtime: Runtime, queue_video: Queue, queue_job: Callable[..., JobRecord], clip: Make
) -> None:
    from PIL import Image

    _video, segments, _ = queue_video(runtime.redis, clip(frames=40), seconds=Fraction(1, 4), owner="alice")
    photo = queue_job(runtime.redis, Image.new("RGB", (32, 32)), owner="bob")
    order = []
    for _ in range(len(segments) + 1):
        keys, args = claim_call("test:1", now(), 60, 3)
        claimed = parse_claimed(runtime.scripts.claim(keys=keys, args=args))
        assert claimed is not None
        order.append(claimed.job_id)
    # Round-robin across clients: bob's photo goes second, not after alice's whole clip.
    assert order[:3] == [segments[0].id, photo.id, segments[1].id]


def test_a_killed_workers_segment_alone_goes_back_in_line(runtime: Runtime, queue_video: Queue, clip: Make) -> None:
    video, segments, _ = queue_video(runtime.redis, clip(frames=30), seconds=Fraction(1, 2))
    first = claim(runtime)
    assert first is not None
    assert first.id == segments[0].id
    # Its process vanished: the lease passes and the sweeper hands that segment back, nothing else.
    keys, args = expire_call(first.id, now() + 3600, 3)
    outcome, _ = (x.decode() for x in runtime.scripts.expire(keys=keys, args=args))
    assert outcome == "requeued"
    states = [p.state for p in read_parts(runtime.redis, video)[:-1]]
    assert states == [JobState.QUEUED, JobState.QUEUED]
    assert _drain(runtime) == ["succeeded"] * 3
    assert _record(runtime.redis, video.id).state is JobState.SUCCEEDED
    assert _record(runtime.redis, segments[0].id).attempts == 2


def test_an_undecodable_frame_fails_the_video_and_takes_its_other_parts_out_of_line(
    runtime: Runtime, queue_video: Queue, clip: Make
) -> None:
    data = bytearray(clip(frames=60, gop=60, width=160, height=96, audio=None))
    video, _segments, _ = queue_video(runtime.redis, bytes(data), seconds=Fraction(1, 2))
    # Garble the middle of the clip's media data: the index still reads, the frames there do not decode.
    chunk = bytearray(runtime.redis.get(clip_chunk_key(video.id, 0)))  # type: ignore[arg-type]
    middle = len(chunk) // 2
    chunk[middle : middle + 4000] = bytes(4000)
    runtime.redis.set(clip_chunk_key(video.id, 0), bytes(chunk))
    outcomes = _drain(runtime)
    assert "failed" in outcomes
    failed = _record(runtime.redis, video.id)
    assert failed.state is JobState.FAILED
    assert failed.error_code is ErrorCode.INVALID_VIDEO
    assert runtime.redis.llen(WAITING_KEY) == 0
    assert runtime.redis.zcard(LEASES_KEY) == 0
    assert all(p.state in (JobState.FAILED, JobState.SUCCEEDED, None) for p in read_parts(runtime.redis, failed))
    assert runtime.redis.exists(clip_chunk_key(video.id, 0)) == 0


def test_a_clip_that_expired_while_waiting_fails_its_video_from_the_sweeper(
    runtime: Runtime, queue_video: Queue, clip: Make
) -> None:
    video, _, _ = queue_video(runtime.redis, clip(frames=30), seconds=Fraction(1, 2))
    runtime.redis.delete(clip_chunk_key(video.id, 0))
    sweeper = Sweeper(runtime.redis, lambda job_id: None, holder="test:1", interval_s=1, max_attempts=3)
    sweeper.fail_expired_inputs()
    failed = _record(runtime.redis, video.id)
    assert failed.state is JobState.FAILED
    assert failed.error_code is ErrorCode.INPUT_EXPIRED
    assert runtime.redis.llen(WAITING_KEY) == 0
    assert run_job(runtime) == "skipped"


def test_a_clip_gone_under_a_running_segment_fails_the_video_input_expired(
    runtime: Runtime, queue_video: Queue, clip: Make
) -> None:
    video, _, _ = queue_video(runtime.redis, clip(frames=30), seconds=Fraction(1, 2))
    runtime.redis.delete(clip_chunk_key(video.id, 0))
    assert run_job(runtime) == "failed"
    failed = _record(runtime.redis, video.id)
    assert (failed.state, failed.error_code) == (JobState.FAILED, ErrorCode.INPUT_EXPIRED)


def test_a_part_whose_video_was_deleted_is_dropped_unrun(runtime: Runtime, queue_video: Queue, clip: Make) -> None:
    video, _segments, _ = queue_video(runtime.redis, clip(frames=30), seconds=Fraction(1, 2))
    runtime.redis.delete(job_key(video.id))
    assert run_job(runtime) == "cancelled"
    assert not runtime.redis.keys("animegan:piece:*")


def test_delete_forgets_a_queued_video_with_its_parts_and_clip(
    runtime: Runtime, queue_video: Queue, clip: Make, redis_url: str
) -> None:
    video, _segments, _ = queue_video(runtime.redis, clip(frames=30), seconds=Fraction(1, 2))
    assert read_info(runtime.redis, video.id) is not None

    async def forget() -> Any:
        async with redis.asyncio.Redis.from_url(redis_url) as client:
            return await forget_job(client, video)

    assert asyncio.run(forget()) is None
    assert not runtime.redis.keys("animegan:job:*")
    assert not runtime.redis.keys("animegan:clip*")
    assert runtime.redis.llen(WAITING_KEY) == 0
    assert runtime.redis.scard(client_active_key("local")) == 0
    assert run_job(runtime) == "skipped"


def test_delete_of_a_video_whose_segment_runs_answers_running(
    runtime: Runtime, queue_video: Queue, clip: Make, redis_url: str
) -> None:
    video, _, _ = queue_video(runtime.redis, clip(frames=30), seconds=Fraction(1, 2))
    assert claim(runtime) is not None  # claimed, the video's own record not yet running

    async def forget() -> Any:
        async with redis.asyncio.Redis.from_url(redis_url) as client:
            return await forget_job(client, video)

    running = asyncio.run(forget())
    assert running is not None
    assert running.kind is JobKind.VIDEO
    assert runtime.redis.exists(job_key(video.id)) == 1


def test_a_result_is_written_in_chunks_of_a_mebibyte(runtime: Runtime) -> None:
    from jobstore.keys import result_chunk_key
    from jobstore.video_blobs import RedisVideoBlobs

    video = JobRecord.model_validate(
        {"id": "V" * 22, "state": "running", "style": "hayao", "format": "mp4", "digest": "d", "created_at": now(),
         "width": 2, "height": 2, "original_width": 2, "original_height": 2, "input_ttl_s": 60, "result_ttl_s": 60,
         "record_ttl_s": 60}
    )  # fmt: skip
    data = bytes(range(256)) * (CHUNK_BYTES // 128 + 3)
    RedisVideoBlobs(runtime.redis).write_result(video, data)
    sizes = [runtime.redis.strlen(result_chunk_key(video.id, n)) for n in range(4)]
    assert sizes == [CHUNK_BYTES, CHUNK_BYTES, len(data) - 2 * CHUNK_BYTES, 0]
