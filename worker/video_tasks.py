"""The parts of a video job, as the one task runs them: a segment, or the join.

A claimed part (``worker.tasks`` claims it like any job, round-robin, leased) is run here:

- a segment reads the probe the gateway kept, decodes only its frames from the clip (read by
  range from Redis or the bucket, ``jobstore.video_blobs``), hands each frame to this process's
  engine and encodes its piece in memory (``video.segments``); the piece is stored and
  SEGMENT_DONE counts it; the last segment's end queues the join, which gets its own message;
- the join reads the pieces one at a time, remuxes them with the clip's original sound
  (``video.join``), stores the MP4 and ends the video (``worker.video_ends``).

A segment checks its video every few frames and stops when the video ended meanwhile (another
part failed it, or it was deleted). What goes wrong with the clip fails the whole video: an
undecodable frame (``invalid-video``), the clip or a piece gone (``input-expired``). A killed
worker costs its segment only: the lease hands that segment back, the others stand.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator

import numpy as np

from jobstore.keys import job_key
from jobstore.records import ErrorCode, JobKind, JobRecord, JobState
from jobstore.video_blobs import ClipGone, VideoBlobs, read_info
from jobstore.videos import join_id, segment_done_call, segment_id, started_call
from video.errors import VideoError
from video.join import PieceMismatchError, join_pieces
from video.picture import upright_size, upright_turns
from video.probe import ClipInfo
from video.segments import Segment, run_segment
from worker import metrics
from worker.runtime import Runtime
from worker.store_retry import store_retry
from worker.video_ends import fail_part, finish_video, read_video

logger = logging.getLogger(__name__)

# A running segment looks at its video's state this often (a HGET), to stop soon after the video ended.
CANCEL_CHECK_FRAMES = 10
_LIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


class PartCancelled(Exception):
    """The part's video ended while the part ran: nothing of it is kept."""


def process_part(runtime: Runtime, part: JobRecord) -> str:
    """Run a claimed segment or join; returns the outcome for the worker log."""
    assert part.parent is not None
    video = store_retry(runtime, "reading the video", lambda: read_video(runtime.redis, str(part.parent)))
    if video is None or video.state.terminal:
        return _cancelled(part)
    keys, args = started_call(part)
    store_retry(runtime, "starting the video", lambda: runtime.video_scripts.started(keys=keys, args=args))
    info = store_retry(runtime, "reading the clip's probe", lambda: read_info(runtime.redis, video.id))
    try:
        if info is None:
            raise ClipGone("the clip's probe is gone")
        if part.kind is JobKind.SEGMENT:
            return _run_segment(runtime, part, video, info)
        return _run_join(runtime, part, video, info)
    except PartCancelled:
        return _cancelled(part)
    except ClipGone:
        return _fail(runtime, part, ErrorCode.INPUT_EXPIRED, "The clip expired before its video was done.")
    except VideoError as exc:
        return _fail(runtime, part, ErrorCode.INVALID_VIDEO, str(exc))
    except PieceMismatchError:
        logger.exception("the pieces do not fit the clip")
        return _fail(runtime, part, ErrorCode.INTERNAL_ERROR, "The worker hit an unexpected error.")


def _run_segment(runtime: Runtime, part: JobRecord, video: JobRecord, info: ClipInfo) -> str:
    blobs = runtime.video_blobs_for(video)
    engine = runtime.stylizer(part.style).engine
    engine_s, frames = 0.0, 0

    def stylize(frame: np.ndarray) -> np.ndarray:
        nonlocal engine_s, frames
        if frames and frames % CANCEL_CHECK_FRAMES == 0:
            _check_live(runtime, video.id)
        started = time.perf_counter()
        out: np.ndarray = engine.run(frame)
        engine_s += time.perf_counter() - started
        frames += 1
        return out

    segment = Segment(part.segment or 0, part.first_frame or 0, part.frames or 0)
    started = time.perf_counter()
    piece = run_segment(blobs.clip(video), segment, stylize, info=info)
    seconds = time.perf_counter() - started
    store_retry(runtime, "storing the piece", lambda: blobs.write_piece(part, piece))
    keys, args = segment_done_call(part, runtime.worker_id, engine_s)
    reply = store_retry(runtime, "ending the segment", lambda: runtime.video_scripts.segment_done(keys=keys, args=args))
    outcome = (reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])) if reply else "lost"
    if outcome == "join":
        runtime.send_token(join_id(video.id))
    metrics.observe_segment("succeeded", frames=frames, seconds=seconds)
    logger.info(
        "segment done",
        extra={"outcome": outcome, "frames": frames, "fps": round(frames / seconds, 3), "bytes": len(piece)},
    )
    return "succeeded" if outcome in ("join", "done") else outcome


def _run_join(runtime: Runtime, part: JobRecord, video: JobRecord, info: ClipInfo) -> str:
    blobs = runtime.video_blobs_for(video)
    started = time.perf_counter()
    ids = [segment_id(video.id, index) for index in range(video.segments or 0)]
    output = join_pieces(_pieces(runtime, blobs, ids), blobs.clip(video), info=info)
    store_retry(runtime, "storing the result", lambda: blobs.write_result(video, output))
    size = (info.output_width, info.output_height)
    width, height = upright_size(size, upright_turns(info.rotation, info.display_matrix))
    precision = str(runtime.stylizer(part.style).precision)

    def finish() -> bool:
        return finish_video(
            runtime.redis, part, runtime.worker_id, width=width, height=height, size=len(output), precision=precision
        )

    if not store_retry(runtime, "ending the video", finish):
        logger.warning("the join lost its lease or the video ended meanwhile; its result is not announced")
        return "lost"
    metrics.observe_video(video.style, "succeeded")
    logger.info(
        "video succeeded",
        extra={"job_id": video.id, "bytes": len(output), "join_s": round(time.perf_counter() - started, 3)},
    )
    return "succeeded"


def _pieces(runtime: Runtime, blobs: VideoBlobs, ids: list[str]) -> Iterator[bytes]:
    """Each piece in order, read when the join reaches it (one in memory at a time)."""
    for piece_id in ids:
        data = store_retry(runtime, "reading a piece", functools.partial(blobs.read_piece, piece_id))
        if data is None:
            raise ClipGone(f"piece {piece_id} is gone")
        yield data


def _check_live(runtime: Runtime, video_id: str) -> None:
    state = store_retry(runtime, "checking the video", lambda: runtime.redis.hget(job_key(video_id), "state"))
    if state is None or (state.decode() if isinstance(state, bytes) else str(state)) not in _LIVE:
        raise PartCancelled


def _cancelled(part: JobRecord) -> str:
    logger.info("the part's video has ended; the part is dropped", extra={"part": part.id})
    if part.kind is JobKind.SEGMENT:
        metrics.observe_segment("cancelled")
    return "cancelled"


def _fail(runtime: Runtime, part: JobRecord, code: ErrorCode, detail: str) -> str:
    store_retry(runtime, "failing the video", lambda: fail_part(runtime.redis, part, code, detail))
    if part.kind is JobKind.SEGMENT:
        metrics.observe_segment("failed")
    return "failed"
