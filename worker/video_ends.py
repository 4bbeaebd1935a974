"""How a video job ends, from the workers: failed by one of its parts, or succeeded by its join.

A video ends once. Each end is a transaction watching the video's record (its parts' ends change
it: SEGMENT_DONE counts frames there), built by ``jobstore.videos``: a part that fails (its own
error, a worker lost too often, the time limit, an expired clip) fails the whole video and takes
its other parts out of the queue; the join succeeds it only while the join still holds its lease.
Used by the tasks, the sweeper and the main process's time-limit handler; blocking clients only.
"""

from __future__ import annotations

import logging

import redis
from redis.exceptions import WatchError

from jobstore.keys import job_key
from jobstore.records import ErrorCode, JobRecord, JobState
from jobstore.videos import add_video_failed, add_video_succeeded, read_parts
from worker import metrics

logger = logging.getLogger(__name__)


def read_video(client: redis.Redis, video_id: str) -> JobRecord | None:
    raw = client.hgetall(job_key(video_id))
    return JobRecord.from_hash(raw) if raw else None


def fail_video(client: redis.Redis, video_id: str, code: ErrorCode, detail: str) -> JobRecord | None:
    """End the video as failed unless it has ended; returns it, or None when it had ended or is gone."""
    key = job_key(video_id)
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.hgetall(key)
                if not raw:
                    return None
                video = JobRecord.from_hash(raw)
                if video.state.terminal:
                    return None
                parts = read_parts(client, video)
                pipe.multi()
                add_video_failed(pipe, video, parts, code, detail)
                pipe.execute()
            except WatchError:
                continue
            metrics.observe_video(video.style, "failed")
            logger.warning("video failed", extra={"job_id": video_id, "error": code.value, "detail": detail})
            return video


def fail_part(client: redis.Redis, part: JobRecord, code: ErrorCode, detail: str) -> JobRecord | None:
    """A part failed: its video fails with it (the part is ended with the video's other parts)."""
    assert part.parent is not None
    return fail_video(client, part.parent, code, detail)


def finish_video(
    client: redis.Redis, join: JobRecord, holder: str, *, width: int, height: int, size: int, precision: str
) -> bool:
    """End the video as succeeded (its result is stored); False when the join lost its lease or the video
    ended meanwhile (the result is not announced then)."""
    assert join.parent is not None
    keys = [job_key(join.parent), job_key(join.id)]
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(*keys)  # type: ignore[no-untyped-call]
                raw, mine = pipe.hgetall(keys[0]), pipe.hmget(keys[1], ["state", "holder"])
                if not raw or [m.decode() if isinstance(m, bytes) else m for m in mine] != ["running", holder]:
                    return False
                video = JobRecord.from_hash(raw)
                if video.state is not JobState.RUNNING:
                    return False
                pipe.multi()
                add_video_succeeded(pipe, video, join, width=width, height=height, size=size, precision=precision)
                pipe.execute()
            except WatchError:
                continue
            return True
