"""A clip as segments of about two seconds, and one segment run: decode, stylize, encode, in memory.

The plan cuts by frame index at the first frame at or after each multiple of the target length
from the clip's start (a variable frame rate still gives segments of about the same duration);
a last segment shorter than half the target joins the one before. It depends on the frame table
only, so any process that probes the same bytes plans the same segments.

A segment run decodes only its frames (``video.decoding``), hands each one, downscaled and
upright, to ``stylize`` as an HxWx3 uint8 array, and encodes what comes back with the frame's
exact timestamp and duration (``video.encoding``). Frames stream through one at a time: the
run holds one decoded frame, one stylized frame and the encoder's short lookahead, whatever the
segment's length. ``stylize`` must map a frame alone (the engine keeps no state between frames),
so a frame stylized inside a segment equals the same frame stylized as a still.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from video.decoding import decode_range
from video.encoding import Encoding, PieceWriter
from video.frametable import FrameTable
from video.picture import to_encoder, to_model, upright_turns
from video.probe import ClipInfo, Limits, inspect_clip
from video.source import ClipData, Source, read_source

Stylize = Callable[[np.ndarray], np.ndarray]
DEFAULT_SEGMENT_SECONDS = Fraction(2)


@dataclass(frozen=True)
class Segment:
    """Frames ``first_frame`` .. ``first_frame + frames - 1`` of a clip, the ``index``-th segment."""

    index: int
    first_frame: int
    frames: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def plan_segments(table: FrameTable, seconds: Fraction | float = DEFAULT_SEGMENT_SECONDS) -> list[Segment]:
    """Cut the clip into segments of about ``seconds`` each, by frame index."""
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    target = Fraction(seconds) / table.time_base  # in ticks
    starts = [0]
    for index, pts in enumerate(table.pts):
        if pts - table.pts[0] >= len(starts) * target:
            starts.append(index)
    end_pts = table.pts[-1] + table.durations[-1]
    if len(starts) > 1 and end_pts - table.pts[starts[-1]] < target / 2:
        starts.pop()
    bounds = [*starts, table.count]
    return [Segment(i, bounds[i], bounds[i + 1] - bounds[i]) for i in range(len(starts))]


def run_segment(
    source: Source,
    segment: Segment,
    stylize: Stylize,
    *,
    limits: Limits | None = None,
    encoding: Encoding | None = None,
    decode_threads: int = 1,
    info: ClipInfo | None = None,
) -> bytes:
    """Stylize one segment of the clip in ``source``; returns the piece (an MP4 of its frames).

    ``limits`` are checked again (the clip was probed with the same ones) and give the max side;
    with ``info`` (the probe of these same bytes, kept since) the clip is not probed again.
    Raises a ``video.errors`` error when the clip cannot be read or a frame does not decode.
    """
    data = read_source(source)
    info = info or inspect_clip(data, limits)
    turns = upright_turns(info.rotation, info.display_matrix)
    writer = PieceWriter((info.output_width, info.output_height), info.frames.time_base, info.frame_rate, encoding)
    try:
        for upright, pts, duration in _model_frames(data, info, segment, decode_threads):
            stylized = stylize(upright)
            if stylized.shape != upright.shape or stylized.dtype != np.uint8:
                raise ValueError(f"stylize returned {stylized.shape} {stylized.dtype} for {upright.shape} uint8")
            writer.write(to_encoder(stylized, turns), pts, duration)
        return writer.finish()
    finally:
        writer.close()


def still_frame(source: Source, index: int, *, limits: Limits | None = None) -> np.ndarray:
    """Frame ``index`` exactly as a segment run hands it to ``stylize`` (downscaled, upright)."""
    data = read_source(source)
    info = inspect_clip(data, limits)
    upright, _, _ = next(_model_frames(data, info, Segment(0, index, 1), 1))
    return upright


def _model_frames(
    data: ClipData, info: ClipInfo, segment: Segment, threads: int
) -> Iterator[tuple[np.ndarray, int, int]]:
    """(upright RGB array, pts, duration) of each frame of ``segment``."""
    size = (info.output_width, info.output_height)
    turns = upright_turns(info.rotation, info.display_matrix)
    table = info.frames
    frames = decode_range(data, info.container, table, segment.first_frame, segment.frames, threads=threads)
    for index, frame in enumerate(frames, start=segment.first_frame):
        yield to_model(frame, size, turns), table.pts[index], table.durations[index]
