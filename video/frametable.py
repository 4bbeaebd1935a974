"""Every frame of a clip's video stream, from its packets alone: timestamps, durations, keyframes.

The table is read by demuxing (no decoding), so it is exact where ``duration x rate`` is not: a
variable frame rate, a 29.97 fps clip, an edit list that hides the first packets. Frames are
numbered in presentation order, as a decoder outputs them; packets an edit list marks as discarded
are no frames (the decoder drops them too), but their keyframes still count as places to start
decoding from. Timestamps stay in the stream's own time base, so nothing is rounded.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.container
import av.packet
import av.video.stream

from video.errors import InvalidVideoError, VideoTooLongError


@dataclass(frozen=True)
class FrameTable:
    """Frames in presentation order: ``pts[i]`` and ``durations[i]`` in ``time_base`` ticks.

    ``keyframes`` holds (pts, dts) of every keyframe packet, by pts; dts is the pts where the
    container has none.
    """

    time_base: Fraction
    pts: tuple[int, ...]
    durations: tuple[int, ...]
    keyframes: tuple[tuple[int, int], ...]

    @property
    def count(self) -> int:
        return len(self.pts)

    @property
    def start(self) -> Fraction:
        """When the first frame is shown, in seconds."""
        return self.pts[0] * self.time_base

    @property
    def duration(self) -> Fraction:
        """From the start of the first frame to the end of the last, in seconds."""
        return (self.pts[-1] + self.durations[-1] - self.pts[0]) * self.time_base

    def seek_point(self, frame: int) -> tuple[int, int] | None:
        """(pts, dts) of the keyframe at or before ``frame`` (presentation order); None when there is none."""
        at = bisect.bisect_right(self.keyframes, (self.pts[frame], float("inf")))
        return self.keyframes[at - 1] if at else None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values; ``from_dict`` gives the same table back."""
        return {
            "time_base": f"{self.time_base.numerator}/{self.time_base.denominator}",
            "pts": list(self.pts),
            "durations": list(self.durations),
            "keyframes": [list(pair) for pair in self.keyframes],
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> FrameTable:
        pts, durations = tuple(int(p) for p in value["pts"]), tuple(int(d) for d in value["durations"])
        if not pts or len(pts) != len(durations):
            raise ValueError("a frame table needs as many durations as timestamps, and at least one")
        keyframes = tuple((int(p), int(d)) for p, d in value["keyframes"])
        return cls(Fraction(value["time_base"]), pts, durations, keyframes)


def read_frame_table(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, *, max_frames: int | None = None
) -> FrameTable:
    """Demux every packet of ``stream`` (from where ``container`` stands) into a FrameTable.

    Raises InvalidVideoError for corrupt packets, packets without timestamps, two frames at one
    time or no frame at all; VideoTooLongError past ``max_frames`` frames.
    """
    if stream.time_base is None:
        raise InvalidVideoError("The clip's video stream has no time base: its frames cannot be put in order.")
    shown: dict[int, int] = {}  # pts -> packet duration
    keyframes: list[tuple[int, int]] = []
    packets = 0
    for packet in _packets(container, stream):
        packets += 1
        if packet.pts is None or packet.is_corrupt:
            raise InvalidVideoError("The clip's video data is corrupt or truncated.")
        if packet.is_keyframe:
            keyframes.append((packet.pts, packet.pts if packet.dts is None else packet.dts))
        if packet.is_discard:
            continue
        if packet.pts in shown:
            raise InvalidVideoError("The clip shows two frames at the same time; it cannot be put in order.")
        shown[packet.pts] = packet.duration or 0
        if max_frames is not None and len(shown) > max_frames:
            raise VideoTooLongError(f"The clip has more than {max_frames} frames, the limit.")
    if not shown:
        raise InvalidVideoError("The clip's video stream has no frames.")
    if stream.frames and packets != stream.frames:  # an MP4 index names every packet; a cut file has fewer
        raise InvalidVideoError("The clip's video data is cut short: the file is truncated.")
    pts = tuple(sorted(shown))
    durations = [later - earlier for earlier, later in itertools.pairwise(pts)]
    durations.append(_last_duration(shown[pts[-1]], durations, stream))
    return FrameTable(Fraction(stream.time_base), pts, tuple(durations), tuple(sorted(keyframes)))


def _packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Iterable[av.packet.Packet[Any]]:
    try:
        for packet in container.demux(stream):
            if packet.size or packet.pts is not None:  # the demuxer ends with an empty flush packet
                yield packet
    except (av.FFmpegError, EOFError) as exc:
        raise InvalidVideoError("The clip's video data is corrupt or truncated.") from exc


def _last_duration(packet_duration: int, durations: list[int], stream: av.video.stream.VideoStream) -> int:
    """The last frame shows for its packet's duration, else as long as the frame before it, else one frame period."""
    if packet_duration > 0:
        return packet_duration
    if durations:
        return durations[-1]
    rate = stream.average_rate or stream.guessed_rate
    if rate and stream.time_base:
        return max(1, round(1 / (Fraction(rate) * Fraction(stream.time_base))))
    return 1
