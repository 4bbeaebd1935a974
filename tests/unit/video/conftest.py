"""Clips made in memory with PyAV for the video tests, and ways to read results back.

Fixtures: ``clip(**fields)`` encodes a synthetic clip (a gradient and a square that move every frame, a
sine tone for sound) into bytes: any container, codecs, frame times, rotation and keyframe
interval the tests need; ``video_packets``, ``audio_packets`` and ``decoded_frames`` read results
back. Nothing touches a file. Test modules use the fixtures, never import from here.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

from video.source import ByteReader

FORMATS = {"mp4": "mp4", "mov": "mov", "webm": "webm", "mkv": "matroska"}


@dataclass(frozen=True)
class Clip:
    """How to make a test clip: ``pts`` (in ``time_base``) gives a variable frame rate."""

    container: str = "mp4"
    video: str = "libx264"
    audio: str | None = "aac"
    width: int = 96
    height: int = 64
    frames: int = 30
    rate: Fraction = Fraction(30)
    time_base: Fraction | None = None
    pts: Sequence[int] | None = None
    gop: int = 12
    bframes: int = 2
    rotation: int | None = None
    sample_rate: int = 48_000
    faststart: bool = False


def picture(index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of the test pattern: smooth gradients plus a square that moves."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack(
        [
            (xx * 255 // max(1, width - 1) + index * 4) % 256,
            yy * 255 // max(1, height - 1),
            (xx + yy + index * 6) % 256,
        ],
        -1,
    ).astype(np.uint8)
    side = max(4, min(width, height) // 4)
    x = (index * 3) % max(1, width - side)
    image[height // 3 : height // 3 + side, x : x + side] = (250, 40, 40)
    return image


def make_clip(spec: Clip) -> bytes:
    buffer = io.BytesIO()
    options = {"movflags": "+faststart"} if spec.faststart else {}
    # faststart rereads the output: FFmpeg reopens it, here a reader over the same buffer.
    reopen = (lambda url, flags, opts: ByteReader(buffer)) if spec.faststart else None
    with av.open(buffer, "w", format=FORMATS[spec.container], options=options, io_open=reopen) as output:
        video = _video_stream(output, spec)
        audio = _audio_stream(output, spec) if spec.audio else None
        time_base = spec.time_base or 1 / spec.rate
        pts = list(spec.pts) if spec.pts is not None else [round(i / spec.rate / time_base) for i in range(spec.frames)]
        for index, at in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(picture(index, spec.width, spec.height), format="rgb24")
            frame.pts = at
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        if audio is not None:
            end = (pts[-1] + (pts[-1] - pts[-2] if len(pts) > 1 else 1)) * time_base
            _write_tone(output, audio, spec.sample_rate, float(end))
    return buffer.getvalue()


def _video_stream(output: av.container.OutputContainer, spec: Clip) -> Any:
    options: dict[str, str] = {"g": str(spec.gop)}
    if spec.video == "libx264":
        options["x264-params"] = f"bframes={spec.bframes}:keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0"
    if spec.video == "libx265":
        options["x265-params"] = f"bframes={spec.bframes}:keyint={spec.gop}:log-level=error"
    if spec.video == "libsvtav1":
        options["svtav1-params"] = f"keyint={spec.gop}"
        options["preset"] = "12"
    stream = output.add_stream(spec.video, rate=spec.rate, options=options)
    stream.width, stream.height = spec.width, spec.height
    stream.pix_fmt = "yuvj420p" if spec.video == "mjpeg" else "yuv420p"
    stream.codec_context.time_base = spec.time_base or 1 / spec.rate
    if spec.rotation is not None:
        stream.set_display_rotation(spec.rotation)
    return stream


def _audio_stream(output: av.container.OutputContainer, spec: Clip) -> Any:
    stream = output.add_stream(spec.audio, rate=spec.sample_rate)
    stream.codec_context.layout = "stereo"
    return stream


def _write_tone(output: av.container.OutputContainer, stream: Any, rate: int, seconds: float) -> None:
    total = round(rate * seconds)
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    for start in range(0, total, 1024):
        t = np.arange(start, min(total, start + 1024)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, start
        if fmt != "fltp":
            frame = av.AudioResampler(format=fmt, layout="stereo", rate=rate).resample(frame)[0]
            frame.pts = start
        output.mux(stream.encode(frame))
    output.mux(stream.encode(None))


@pytest.fixture
def clip() -> Callable[..., bytes]:
    """``clip(**fields)``: the bytes of ``Clip(**fields)``."""
    return lambda **fields: make_clip(Clip(**fields))


def _video_packets(data: bytes, **options: str) -> list[tuple[Fraction, Fraction]]:
    """(pts, duration) in seconds of every shown video frame, in presentation order."""
    with av.open(io.BytesIO(data), options=options) as media:
        stream = media.streams.video[0]
        tb = Fraction(stream.time_base)
        found = [
            (p.pts * tb, (p.duration or 0) * tb)
            for p in media.demux(stream)
            if p.size and not p.is_discard and p.pts is not None
        ]
    return sorted(found)


def _audio_packets(data: bytes, **options: str) -> list[tuple[bytes, Fraction, Fraction]]:
    """(bytes, pts, duration) in seconds of every audio packet (``ignore_editlist="1"``: as stored)."""
    with av.open(io.BytesIO(data), options=options) as media:
        stream = media.streams.audio[0]
        tb = Fraction(stream.time_base)
        return [
            (bytes(p), p.pts * tb, (p.duration or 0) * tb) for p in media.demux(stream) if p.size and p.pts is not None
        ]


def _decoded_frames(data: bytes) -> list[np.ndarray]:
    """Every video frame of ``data`` as stored (no rotation), RGB."""
    with av.open(io.BytesIO(data)) as media:
        return [frame.to_ndarray(format="rgb24") for frame in media.decode(video=0)]


@pytest.fixture
def video_packets() -> Callable[..., list[tuple[Fraction, Fraction]]]:
    """(pts, duration) in seconds of every shown video frame of a clip's bytes, in presentation order."""
    return _video_packets


@pytest.fixture
def audio_packets() -> Callable[..., list[tuple[bytes, Fraction, Fraction]]]:
    """(bytes, pts, duration) in seconds of every audio packet (``ignore_editlist="1"``: as stored)."""
    return _audio_packets


@pytest.fixture
def decoded_frames() -> Callable[[bytes], list[np.ndarray]]:
    """Every video frame of a clip's bytes as stored (no rotation), RGB."""
    return _decoded_frames
