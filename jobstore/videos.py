"""Video jobs in the job store: the video's record, its segments and join, their admission and ends.

A video (``JobKind.VIDEO``) is a record that is never queued: its segments (``{id}-s{n}``), and once
they all succeeded its join (``{id}-join``), are records of their own that the fair queue runs like
photos. So a clip counts as its segments against the queue depth and the client's quota, each
segment takes its turn round-robin with other clients' jobs, any worker runs any segment, and a
lease hands a killed worker's segment back alone. The video's record sums what its parts report
(frames and segments done, engine seconds); its state is ``queued`` until a part is claimed,
``running`` until the join ends it (``succeeded``) or a part fails it (``failed``: the parts not
ended yet are taken out of the queue and failed with it).

What decides runs in Lua (``jobstore.video_scripts``); this module builds the calls and the
pipelines of the ends, which the caller executes in a transaction watching the video's record,
so a video ends once. Imports redis, the job store and video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from jobstore.blobs import OBJECT_STORE, in_object_store
from jobstore.keys import (
    LEASES_KEY,
    ROUND_KEY,
    WAITING_KEY,
    client_active_key,
    client_queue_key,
    clip_info_key,
    job_key,
    result_chunk_key,
)
from jobstore.queue import Limits
from jobstore.records import ErrorCode, JobKind, JobRecord, JobState, as_text, now
from jobstore.transitions import add_delete, add_leave, add_mark_failed, add_mark_succeeded
from jobstore.video_blobs import add_forget_clip, add_forget_pieces, add_forget_result, chunk_count
from jobstore.video_scripts import ADMIT_VIDEO, SEGMENT_DONE, STARTED
from video.picture import upright_size, upright_turns
from video.probe import ClipInfo
from video.segments import Segment

Pipe = redis.client.Pipeline | redis.asyncio.client.Pipeline
_PART_FIELDS = ("state", "holder", "segment", "first_frame", "frames")


def segment_id(video_id: str, index: int) -> str:
    return f"{video_id}-s{index}"


def join_id(video_id: str) -> str:
    return f"{video_id}-join"


def part_ids(video: JobRecord) -> list[str]:
    """The video's segments in order, then its join (which exists once the segments are done)."""
    return [segment_id(video.id, n) for n in range(video.segments or 0)] + [join_id(video.id)]


@dataclass(frozen=True)
class VideoTtls:
    """How long a video's clip (and pieces), result and records are kept, in seconds."""

    input_s: int
    result_s: int
    record_s: int


def video_record(
    job_id: str,
    info: ClipInfo,
    plan: Sequence[Segment],
    *,
    style: str,
    client: str,
    digest: str,
    clip_bytes: int,
    ttls: VideoTtls,
    in_bucket: bool,
    request_id: str | None = None,
    callback_url: str | None = None,
) -> JobRecord:
    """The queued record of a new video of the probed clip ``info``, cut as ``plan``.

    Sizes are as shown (upright): ``original_*`` the clip's, ``width`` x ``height`` the stylized frames'.
    """  # fmt: skip
    turns = upright_turns(info.rotation, info.display_matrix)
    width, height = upright_size((info.output_width, info.output_height), turns)
    original_width, original_height = upright_size((info.width, info.height), turns)
    return JobRecord(
        id=job_id,
        state=JobState.QUEUED,
        style=style,
        format="mp4",
        digest=digest,
        created_at=now(),
        width=width,
        height=height,
        original_width=original_width,
        original_height=original_height,
        input_ttl_s=ttls.input_s,
        result_ttl_s=ttls.result_s,
        record_ttl_s=ttls.record_s,
        request_id=request_id,
        client=client,
        callback_url=callback_url,
        blobs=OBJECT_STORE if in_bucket else None,
        kind=JobKind.VIDEO,
        clip_bytes=clip_bytes,
        frames_total=info.frame_count,
        frames_done=0,
        segments=len(plan),
        segments_done=0,
    )


def segment_records(video: JobRecord, plan: Sequence[Segment]) -> list[JobRecord]:
    """The queued record of each segment of ``plan``."""
    return [
        _part(video, segment_id(video.id, s.index), JobKind.SEGMENT, segment=s.index, first_frame=s.first_frame,
              frames=s.frames)
        for s in plan
    ]  # fmt: skip


def join_record(segment: JobRecord) -> JobRecord:
    """The queued record of a video's join, from one of its segments (the last one's end creates it)."""
    assert segment.parent is not None
    update: dict[str, Any] = {"id": join_id(segment.parent), "kind": JobKind.JOIN, "digest": f"{segment.parent}:join"}
    update.update(created_at=now(), segment=None, first_frame=None, frames=None, state=JobState.QUEUED, attempts=0)
    # A claimed segment's run is not the join's.
    update.update(started_at=None, holder=None, queue_s=None, inference_s=None, finished_at=None)
    return segment.model_copy(update=update)


def _part(video: JobRecord, part_id: str, kind: JobKind, **fields: Any) -> JobRecord:
    return video.model_copy(
        update={
            "id": part_id,
            "kind": kind,
            "parent": video.id,
            "digest": f"{video.digest}:{part_id}",
            "upload_digest": None,
            "callback_url": None,  # a part's end is announced through its video only
            "created_at": now(),
            "clip_bytes": None,
            "frames_total": None,
            "frames_done": None,
            "segments": None,
            "segments_done": None,
            **fields,
        }
    )


def _fields(record: JobRecord) -> list[str]:
    return [x for pair in record.to_hash().items() for x in pair]


def admit_video_call(
    video: JobRecord, segments: Sequence[JobRecord], probe_json: str, limits: Limits
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of ADMIT_VIDEO: the video, its probe and its queued segments."""
    keys = [WAITING_KEY, ROUND_KEY, client_active_key(video.client), job_key(video.id), clip_info_key(video.id)]
    fields = _fields(video)
    args: list[str | int] = [video.id, video.client, limits.max_depth, limits.max_per_client, video.input_ttl_s]
    args += [video.record_ttl_s, len(segments), probe_json, len(fields), *fields]
    for segment in segments:
        part = _fields(segment)
        args += [segment.id, len(part), *part]
    return keys, args


@dataclass(frozen=True)
class VideoAdmitted:
    """``outcome``: created, queue-full or client-quota; ``count``: the depth, or the client's jobs."""

    outcome: str
    count: int


def parse_video_admitted(reply: Sequence[bytes | str]) -> VideoAdmitted:
    outcome, count = (as_text(x) for x in reply)
    return VideoAdmitted(outcome, int(count))


def started_call(part: JobRecord) -> tuple[list[str], list[str]]:
    """STARTED for a claimed part: its video turns running (if it was queued); the claim is announced."""
    assert part.parent is not None
    return [job_key(part.parent)], [part.parent, repr(now())]


def segment_done_call(segment: JobRecord, holder: str, inference_s: float) -> tuple[list[str], list[str]]:
    """SEGMENT_DONE: KEYS and ARGV. The join's record is passed along; only the last segment's end creates it."""
    assert segment.parent is not None
    keys = [WAITING_KEY, ROUND_KEY, LEASES_KEY, job_key(segment.parent), job_key(segment.id)]
    join = join_record(segment)
    join_fields = _fields(join)
    args = [segment.id, segment.parent, holder, repr(now()), repr(inference_s), join.id, str(len(join_fields))]
    return keys, [*args, *join_fields]


class VideoScripts:
    """The video scripts registered on one blocking client (the workers)."""

    def __init__(self, client: redis.Redis) -> None:
        self.started = client.register_script(STARTED)
        self.segment_done = client.register_script(SEGMENT_DONE)


class AsyncVideoScripts:
    """The admission script on one asyncio client (the gateway)."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.admit = client.register_script(ADMIT_VIDEO)


@dataclass(frozen=True)
class Part:
    """A segment (``index`` >= 0) or the join (``index`` None) as its record says now."""

    id: str
    state: JobState | None  # None: the record is gone (never created: a join not queued yet)
    worker: str | None
    index: int | None
    first_frame: int | None
    frames: int | None


def add_read_parts(pipe: Pipe, video: JobRecord) -> list[str]:
    """Queue one HMGET per part on ``pipe``; returns their ids, for ``parse_parts``."""
    ids = part_ids(video)
    for part in ids:
        pipe.hmget(job_key(part), list(_PART_FIELDS))
    return ids


def parse_parts(ids: Sequence[str], replies: Sequence[Sequence[bytes | str | None]]) -> list[Part]:
    parts = []
    for part, values in zip(ids, replies, strict=True):
        state, holder, index, first, frames = (None if v is None else as_text(v) for v in values)
        parts.append(
            Part(
                id=part,
                state=JobState(state) if state else None,
                worker=holder,
                index=int(index) if index is not None else None,
                first_frame=int(first) if first is not None else None,
                frames=int(frames) if frames is not None else None,
            )
        )
    return parts


def read_parts(client: redis.Redis, video: JobRecord) -> list[Part]:
    """The parts of a video now (blocking client)."""
    pipe = client.pipeline(transaction=False)
    ids = add_read_parts(pipe, video)
    return parse_parts(ids, pipe.execute())


def _add_keep_parts(pipe: Pipe, video: JobRecord) -> None:
    """Parts live as long as the video's record (their TTL restarts with its end)."""
    for part in part_ids(video):
        pipe.expire(job_key(part), video.record_ttl_s)


def _add_release(pipe: Pipe, video: JobRecord, *, result_too: bool) -> None:
    """Delete what the video no longer needs: its probe, pieces and (in Redis) its clip."""
    segments = part_ids(video)[:-1]
    add_forget_pieces(pipe, segments, in_bucket=in_object_store(video))
    if in_object_store(video):
        pipe.delete(clip_info_key(video.id))
    else:
        add_forget_clip(pipe, video.id, video.clip_bytes or 0)
        if result_too:
            add_forget_result(pipe, video.id, video.output_bytes)


def add_video_succeeded(
    pipe: Pipe, video: JobRecord, join: JobRecord, *, width: int, height: int, size: int, precision: str
) -> None:
    """End the video (its result is stored) and its join; the TTLs of result and parts restart now."""
    add_mark_succeeded(
        pipe, video, inference_s=video.inference_s or 0.0, width=width, height=height, size=size, precision=precision
    )
    fields = {"state": JobState.SUCCEEDED.value, "finished_at": str(now())}
    pipe.hset(job_key(join.id), mapping=fields)  # type: ignore[arg-type]
    add_leave(pipe, join)
    if not in_object_store(video):
        for index in range(chunk_count(size)):
            pipe.expire(result_chunk_key(video.id, index), video.result_ttl_s)
    _add_release(pipe, video, result_too=False)
    _add_keep_parts(pipe, video)


def add_video_failed(pipe: Pipe, video: JobRecord, parts: Sequence[Part], code: ErrorCode, detail: str) -> None:
    """End the video as failed: its parts not ended yet leave the queue, failed with it."""
    add_mark_failed(pipe, video, code, detail)
    for part in parts:
        if part.state is not None and not part.state.terminal:
            _add_part_ended(pipe, video, part.id, JobState.FAILED)
    _add_release(pipe, video, result_too=True)
    _add_keep_parts(pipe, video)


def add_video_forget(pipe: Pipe, video: JobRecord) -> None:
    """Forget the video now (DELETE /jobs/{id}): its record, parts, clip, pieces and result."""
    add_delete(pipe, video)
    _add_release(pipe, video, result_too=True)
    for part in part_ids(video):
        _add_part_ended(pipe, video, part, None)


def _add_part_ended(pipe: Pipe, video: JobRecord, part: str, state: JobState | None) -> None:
    """A part leaves every line and count; it is marked ``state``, or deleted (None)."""
    pipe.lrem(WAITING_KEY, 1, part)
    pipe.lrem(client_queue_key(video.client), 1, part)
    pipe.zrem(LEASES_KEY, part)
    pipe.srem(client_active_key(video.client), part)
    if state is None:
        pipe.delete(job_key(part))
    else:
        pipe.hset(job_key(part), mapping={"state": state.value, "finished_at": str(now())})
