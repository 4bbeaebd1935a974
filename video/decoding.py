"""Decode exactly a range of a clip's frames, one at a time, starting from the nearest keyframe.

Decoding starts at the keyframe at or before the range's first frame (by the frame table), and
the frames before the range are dropped as they come out, so a range anywhere in a clip costs at
most one group of pictures of extra decoding and one frame of memory at a time. Where the
demuxer's seek lands past that keyframe (its index is keyed by decode times), decoding restarts
from the beginning instead: slower, never wrong. Every frame of the range must come out, with
the timestamp the table says, or the clip is refused as undecodable.
"""

from __future__ import annotations

from collections.abc import Iterator

import av
import av.container
import av.video.stream

from video.errors import InvalidVideoError
from video.frametable import FrameTable
from video.probe import video_stream
from video.source import ClipData, open_input


class _Overshot(Exception):
    """The seek landed after the keyframe the range needs."""


def decode_range(
    data: ClipData, container: str, table: FrameTable, first: int, count: int, *, threads: int = 1
) -> Iterator[av.VideoFrame]:
    """Frames ``first`` .. ``first + count - 1`` (presentation order) of the clip, in order.

    Raises InvalidVideoError when a frame of the range does not decode.
    """
    if count < 1 or first < 0 or first + count > table.count:
        raise ValueError(f"frames {first}..{first + count - 1} are outside the clip's {table.count} frames")
    wanted = table.pts[first : first + count]
    point = table.seek_point(first) if first else None
    try:
        yield from _decode(data, container, wanted, point[1] if point else None, threads)
    except _Overshot:
        yield from _decode(data, container, wanted, None, threads)


def _decode(
    data: ClipData, container: str, wanted: tuple[int, ...], seek_dts: int | None, threads: int
) -> Iterator[av.VideoFrame]:
    done = 0
    with open_input(data, container) as media:
        stream = video_stream(media, container)
        time_base = stream.time_base
        stream.codec_context.thread_count = threads
        if seek_dts is not None:
            media.seek(seek_dts, stream=stream, backward=True, any_frame=False)
        for frame in _frames(media, stream, seek_dts):
            if frame.pts is None or frame.pts < wanted[done]:
                continue
            if frame.pts != wanted[done]:
                break
            yield frame
            done += 1
            if done == len(wanted):
                return
    when = f"{float(wanted[done] * time_base):.3f} s" if time_base else f"pts {wanted[done]}"
    raise InvalidVideoError(f"The clip's video could not be decoded: its frame at {when} is missing.")


def _frames(
    media: av.container.InputContainer, stream: av.video.stream.VideoStream, seek_dts: int | None
) -> Iterator[av.VideoFrame]:
    first = True
    try:
        for packet in media.demux(stream):
            if first and packet.size:
                first = False
                landed = packet.dts if packet.dts is not None else packet.pts
                if seek_dts is not None and landed is not None and landed > seek_dts:
                    raise _Overshot
            yield from stream.decode(packet)
    except (av.FFmpegError, EOFError) as exc:
        raise InvalidVideoError("The clip's video could not be decoded: it is truncated or corrupt.") from exc
