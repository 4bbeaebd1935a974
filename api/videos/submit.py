"""Submitting a clip (POST /videos): ``submit_video`` owns the policy, the route maps its outcome to HTTP.

The steps, in this order; each may end the submission with a problem:

1. precheck, before a byte is stored: the store's memory budget for the clip (in Redis; with a
   bucket, its records only), the queue depth and the client's quota (room for one segment);
2. stream: the clip goes to the store as it arrives (``api.videos.clip_store``), refused past
   ANIMEGAN_MAX_VIDEO_BYTES; the form's fields are judged once the body has ended (``style`` and
   ``callback_url``, as POST /stylize judges them);
3. probe the stored clip in place (container, codecs, size, exact frame times, duration, sound:
   ``video.probe``) against ANIMEGAN_MAX_VIDEO_SECONDS and the frame size, and cut it into
   segments of about two seconds; a clip with more segments than the queue depth or the quota
   could ever hold is refused (422 ``video-too-long``, naming the longest clip that fits);
4. the budget again, for what the video will write: its pieces and its result (bounded by the
   encoder's rate cap, ``jobstore.video_blobs.video_bytes_bound``);
5. admit: ADMIT_VIDEO queues the video's segments, all or none (``Admission.admit_video``);
6. one message per segment; describe.

Every refusal after the first byte was stored deletes the clip. No dedup and no Idempotency-Key:
a clip is a job of its own each time it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.config import ApiSettings
from api.edge.upload import FormFields
from api.jobs.admission import Admission
from api.jobs.describe import Described, describe
from api.jobs.reader import JobReader
from api.jobs.request import JobRequest, read_job_request
from api.jobs.sender import TaskSender
from api.jobs.store_budget import RECORD_BYTES
from api.problems import ApiError, broker_unavailable
from api.tenancy.clients import ClientIdentity
from api.videos.clip_store import ClipStore, StoredClip
from api.videos.form import StreamedForm
from jobstore.keys import QUEUE_NAME, TASK_NAME
from jobstore.records import ErrorCode, JobRecord, new_job_id
from jobstore.video_blobs import ClipGone, encode_info, video_bytes_bound
from jobstore.videos import Part, VideoTtls, add_video_failed, segment_records, video_record
from video.errors import (
    FrameTooLargeError,
    InvalidVideoError,
    UnsupportedVideoError,
    VideoError,
    VideoTooLargeError,
    VideoTooLongError,
)
from video.probe import ClipInfo, Limits
from video.segments import DEFAULT_SEGMENT_SECONDS, Segment, plan_segments

# What each refusal of the video package is, as a problem.
VIDEO_PROBLEMS: dict[type[VideoError], str] = {
    InvalidVideoError: "invalid-video",
    UnsupportedVideoError: "unsupported-video",
    VideoTooLargeError: "video-too-large",
    VideoTooLongError: "video-too-long",
    FrameTooLargeError: "video-frames-too-large",
}


@dataclass(frozen=True)
class VideoIntake:
    """The parts a clip's submission uses, one of each per app (``api.videos.deps``)."""

    settings: ApiSettings
    store: redis.asyncio.Redis
    reader: JobReader
    admission: Admission
    sender: TaskSender
    clips: ClipStore


def video_limits(settings: ApiSettings) -> Limits:
    return Limits(
        max_bytes=settings.max_video_bytes, max_seconds=settings.max_video_seconds, max_side=settings.video_max_side
    )


async def submit_video(
    form: StreamedForm, client: ClientIdentity, request_id: str | None, declared_bytes: int | None, intake: VideoIntake
) -> Described:
    """Precheck, store, probe, admit and describe one clip; raises ApiError for every refusal."""
    settings = intake.settings
    incoming = min(declared_bytes or settings.max_video_bytes, settings.max_video_bytes)
    await intake.admission.budget.check_footprint(RECORD_BYTES if intake.clips.in_bucket else incoming)
    await intake.admission.check_limits(client)
    clip = await intake.clips.write(new_job_id(), form.clip_chunks())
    try:
        fields = FormFields(style=form.field("style"), callback_url=form.field("callback_url"))
        request = await read_job_request(fields, settings, client=client, request_id=request_id)
        info = await _probe(clip, intake)
        plan = plan_segments(info.frames, DEFAULT_SEGMENT_SECONDS)
        _check_fits(len(plan), info, settings)
        await intake.admission.budget.check_footprint(_footprint(clip, info, len(plan), intake.clips.in_bucket))
        video = _video(clip, info, plan, request, settings, in_bucket=intake.clips.in_bucket)
        segments = segment_records(video, plan)
        await intake.admission.admit_video(video, segments, encode_info(info), client)
    except BaseException:
        await intake.clips.discard(clip.job_id, clip.size)
        raise
    await _send(intake, video, segments)
    metrics.observe_video_submitted(clip.size, len(segments))
    return await describe(video, intake.reader, intake.admission)


async def _probe(clip: StoredClip, intake: VideoIntake) -> ClipInfo:
    try:
        return await intake.clips.probe(clip, video_limits(intake.settings))
    except VideoError as exc:
        slug = next(s for kind, s in VIDEO_PROBLEMS.items() if isinstance(exc, kind))
        raise ApiError(slug, str(exc)) from None
    except ClipGone:
        raise broker_unavailable("reading the clip back") from None


def _check_fits(segments: int, info: ClipInfo, settings: ApiSettings) -> None:
    """Refuse a clip that no amount of waiting would admit: more segments than either limit."""
    room = min(settings.max_queued_per_client, settings.max_queue_depth)
    if segments <= room:
        return
    longest = room * DEFAULT_SEGMENT_SECONDS
    limit = "ANIMEGAN_MAX_QUEUED_PER_CLIENT" if room == settings.max_queued_per_client else "ANIMEGAN_MAX_QUEUE_DEPTH"
    detail = (
        f"The clip lasts {float(info.duration):.1f} s: {segments} segments of about "
        f"{float(DEFAULT_SEGMENT_SECONDS):g} s, and this service queues at most {room} jobs at once ({limit}); "
        f"send at most {float(longest):g} s."
    )
    raise ApiError("video-too-long", detail, extra={"segments": segments, "max_segments": room})


def _footprint(clip: StoredClip, info: ClipInfo, segments: int, in_bucket: bool) -> int:
    """What the admitted video adds to Redis from now on: its records and probe, and in Redis its pieces and
    its result (the result's sound: at most the clip's bytes)."""
    records = (segments + 2) * RECORD_BYTES + 64 * info.frame_count
    if in_bucket:
        return records
    return records + 2 * video_bytes_bound(info) + clip.size


def _video(
    clip: StoredClip,
    info: ClipInfo,
    plan: list[Segment],
    request: JobRequest,
    settings: ApiSettings,
    *,
    in_bucket: bool,
) -> JobRecord:
    ttls = VideoTtls(settings.input_ttl_s, settings.result_ttl_s, settings.record_ttl_s)
    return video_record(
        clip.job_id,
        info,
        plan,
        style=request.style,
        client=request.client.id,
        digest=clip.digest,
        clip_bytes=clip.size,
        ttls=ttls,
        in_bucket=in_bucket,
        request_id=request.request_id,
        callback_url=request.callback_url,
    )


async def _send(intake: VideoIntake, video: JobRecord, segments: list[JobRecord]) -> None:
    """One message per segment; when the broker cannot take them the video fails and the client gets 503."""
    celery = intake.sender.celery

    def send_all() -> None:
        for segment in segments:
            celery.send_task(TASK_NAME, args=[segment.id], queue=QUEUE_NAME)

    try:
        await run_in_threadpool(send_all)
    except Exception:
        parts = [Part(s.id, s.state, None, s.segment, s.first_frame, s.frames) for s in segments]
        try:
            async with intake.store.pipeline(transaction=True) as pipe:
                add_video_failed(pipe, video, parts, ErrorCode.BROKER_UNAVAILABLE, "The video could not be queued.")
                await pipe.execute()
        except RedisError:
            pass
        raise broker_unavailable("sending the segments") from None
