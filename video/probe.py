"""What a clip is, read from memory without decoding it whole, and whether it is within the limits.

``probe`` judges the container by its leading bytes, reads the declared duration and frame size
from the headers (a clip far over a limit is refused before its packets are read), then demuxes
the video packets for the exact frame table and decodes the first frame only: that proves the
stream decodes and yields the display matrix (rotation). Audio is described from its header.

Containers: MP4, MOV (FFmpeg's mov demuxer), WebM, MKV (its matroska demuxer). Video codecs:
H.264, H.265, VP9, AV1. Anything else, or anything unreadable, raises a ``video.errors`` error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, cast

import av
import av.audio.stream
import av.container
import av.video.stream
from av.sidedata.sidedata import SideDataContainer, Type

from video.errors import FrameTooLargeError, InvalidVideoError, UnsupportedVideoError, VideoTooLongError
from video.frametable import FrameTable, read_frame_table
from video.picture import output_size
from video.source import ClipData, Source, open_input, read_source, require_whole, sniff_container

# FFmpeg codec name -> the name users know.
VIDEO_CODECS: Final[dict[str, str]] = {"h264": "H.264", "hevc": "H.265", "vp9": "VP9", "av1": "AV1"}


@dataclass(frozen=True)
class Limits:
    """What a clip may be: bytes, seconds, frames, pixels per frame; and the output's longest side."""

    max_bytes: int = 100 << 20
    max_seconds: float = 60.0
    # 60 s at 120 fps: bounds the work of a clip (and the frame table) whatever its duration.
    max_frames: int = 7200
    # 4096 x 2160 (DCI 4K): a decoder's reference frames of anything larger cost too much memory.
    max_pixels: int = 4096 * 2160
    max_side: int = 720

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_seconds, self.max_frames, self.max_pixels, self.max_side) <= 0:
            raise ValueError("every limit must be positive")


@dataclass(frozen=True)
class AudioInfo:
    """The first audio stream: FFmpeg codec name, channels, samples per second."""

    codec: str
    channels: int
    sample_rate: int


@dataclass(frozen=True)
class ClipInfo:
    """A probed clip. Sizes are as stored (before rotation); ``output_*`` after downscaling to the max side."""

    container: str
    video_codec: str
    width: int
    height: int
    output_width: int
    output_height: int
    rotation: int
    display_matrix: tuple[int, ...] | None
    # The declared rate of a constant-rate clip, else (a variable rate) frames per second on average.
    frame_rate: Fraction
    frames: FrameTable
    audio: AudioInfo | None

    @property
    def frame_count(self) -> int:
        return self.frames.count

    @property
    def duration(self) -> Fraction:
        """Seconds from the start of the first frame to the end of the last."""
        return self.frames.duration

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (what a job keeps, so no process probes the clip twice); see ``from_dict``."""
        value = {k: v for k, v in self.__dict__.items() if k not in ("frames", "audio", "frame_rate")}
        value["display_matrix"] = list(self.display_matrix) if self.display_matrix is not None else None
        value["frame_rate"] = f"{self.frame_rate.numerator}/{self.frame_rate.denominator}"
        value["frames"] = self.frames.as_dict()
        value["audio"] = dict(self.audio.__dict__) if self.audio is not None else None
        return value

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ClipInfo:
        matrix, audio = value["display_matrix"], value["audio"]
        return cls(
            container=str(value["container"]),
            video_codec=str(value["video_codec"]),
            width=int(value["width"]),
            height=int(value["height"]),
            output_width=int(value["output_width"]),
            output_height=int(value["output_height"]),
            rotation=int(value["rotation"]),
            display_matrix=tuple(int(x) for x in matrix) if matrix is not None else None,
            frame_rate=Fraction(value["frame_rate"]),
            frames=FrameTable.from_dict(value["frames"]),
            audio=AudioInfo(**audio) if audio is not None else None,
        )


def probe(source: Source, limits: Limits | None = None) -> ClipInfo:
    """Describe the clip in ``source`` and check it against ``limits`` (defaults: ``Limits()``).

    Raises:
        VideoTooLargeError: more bytes than ``max_bytes`` (a stream is refused while it is read).
        UnsupportedVideoError: not MP4, MOV, WebM or MKV, or video not H.264, H.265, VP9 or AV1.
        FrameTooLargeError: frames of more than ``max_pixels`` pixels.
        VideoTooLongError: longer than ``max_seconds`` or more than ``max_frames`` frames.
        InvalidVideoError: empty, truncated, corrupt, without video, or undecodable.
    """
    limits = limits or Limits()
    data = read_source(source, limits.max_bytes)
    return inspect_clip(data, limits)


def inspect_clip(data: ClipData, limits: Limits | None = None) -> ClipInfo:
    """``probe`` for bytes already in memory; the byte limit is not checked here."""
    limits = limits or Limits()
    container = sniff_container(data)
    require_whole(data, container)
    with open_input(data, container) as media:
        stream = video_stream(media, container)
        _check_header(media, stream, limits)
        frames = read_frame_table(media, stream, max_frames=limits.max_frames)
        if frames.duration > Fraction(limits.max_seconds):
            raise VideoTooLongError(_too_long(frames.duration, limits.max_seconds))
        audio = _audio(media)
        # Read while the container is open: its streams are freed with it.
        codec, width, height = (
            stream.codec_context.codec.canonical_name,
            stream.codec_context.width,
            stream.codec_context.height,
        )
        # FFmpeg's guess (the rate the timestamps keep to) survives remuxing; the average of an
        # MP4 is recomputed from rounded durations (a WebM's milliseconds).
        rate = stream.guessed_rate or stream.average_rate
    rotation, matrix = _first_frame_display(data, container)
    out_width, out_height = output_size(width, height, limits.max_side)
    return ClipInfo(
        container=container,
        video_codec=codec,
        width=width,
        height=height,
        output_width=out_width,
        output_height=out_height,
        rotation=rotation,
        display_matrix=matrix,
        frame_rate=_frame_rate(rate, frames),
        frames=frames,
        audio=audio,
    )


def video_stream(media: av.container.InputContainer, container: str) -> av.video.stream.VideoStream:
    """The clip's first video stream; raises when there is none or its codec is not accepted."""
    if not media.streams.video:
        raise InvalidVideoError(f"The {container.upper()} file has no video stream.")
    stream = media.streams.video[0]
    codec = stream.codec_context.codec.canonical_name
    if codec not in VIDEO_CODECS:
        accepted = ", ".join(VIDEO_CODECS.values())
        raise UnsupportedVideoError(f"The clip's video is {codec.upper()}; send {accepted} video.")
    return stream


def _check_header(media: av.container.InputContainer, stream: av.video.stream.VideoStream, limits: Limits) -> None:
    width, height = stream.codec_context.width, stream.codec_context.height
    if width < 1 or height < 1:
        raise InvalidVideoError(f"The clip's frames have no pixels ({width}x{height}).")
    if width * height > limits.max_pixels:
        raise FrameTooLargeError(
            f"The clip's frames are {width}x{height} pixels; the limit is {limits.max_pixels / 1e6:.1f} megapixels."
        )
    # The declared duration refuses a far too long clip before its packets are read; the frame
    # table decides exactly afterwards (a header may understate).
    if media.duration is not None and Fraction(media.duration, av.time_base) > 2 * Fraction(limits.max_seconds):
        raise VideoTooLongError(_too_long(Fraction(media.duration, av.time_base), limits.max_seconds))


def _audio(media: av.container.InputContainer) -> AudioInfo | None:
    if not media.streams.audio:
        return None
    stream: av.audio.stream.AudioStream = media.streams.audio[0]
    context = stream.codec_context
    return AudioInfo(codec=context.codec.canonical_name, channels=context.channels, sample_rate=context.sample_rate)


def _first_frame_display(data: ClipData, container: str) -> tuple[int, tuple[int, ...] | None]:
    """Decode the first frame: (rotation in degrees counter-clockwise, display matrix or None)."""
    with open_input(data, container) as media:
        stream = video_stream(media, container)
        stream.codec_context.thread_count = 1
        try:
            frame = next(media.decode(stream), None)
        except (av.FFmpegError, EOFError) as exc:
            raise InvalidVideoError("The clip's video could not be decoded: it is truncated or corrupt.") from exc
        if frame is None:
            raise InvalidVideoError("The clip's video could not be decoded: no frame came out of it.")
        # PyAV's stubs type side_data as a TypedDict; it is a SideDataContainer.
        side = cast("SideDataContainer", frame.side_data).get(Type.DISPLAYMATRIX)
        matrix = bytes(side) if side is not None else b""
        rotation = round(frame.rotation)
    if len(matrix) != 36:
        return 0, None
    values: tuple[int, ...] = struct.unpack("=9i", matrix)  # FFmpeg keeps it in native byte order
    return rotation, values


def _frame_rate(declared: Fraction | None, frames: FrameTable) -> Fraction:
    """The declared rate when the frames keep to it (within 1 %: timestamps are rounded), else the mean rate."""
    mean = frames.count / frames.duration if frames.duration else Fraction(0)
    if declared and abs(mean - declared) <= Fraction(declared) / 100:
        return Fraction(declared)
    return mean


def _too_long(duration: Fraction, max_seconds: float) -> str:
    return f"The clip lasts {float(duration):.1f} s; the limit is {max_seconds:g} s."
