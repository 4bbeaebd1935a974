"""video.probe: what a clip is, from memory, and which clips are refused with which typed error."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from fractions import Fraction

import pytest

from video.errors import (
    FrameTooLargeError,
    InvalidVideoError,
    UnsupportedVideoError,
    VideoError,
    VideoTooLargeError,
    VideoTooLongError,
)
from video.probe import Limits, probe
from video.source import sniff_container

Make = Callable[..., bytes]


@pytest.mark.parametrize(
    ("fields", "container", "codec", "audio"),
    [
        ({}, "mp4", "h264", "aac"),
        ({"container": "webm", "video": "libvpx-vp9", "audio": "libopus"}, "webm", "vp9", "opus"),
        ({"container": "mkv", "video": "libx265", "audio": "pcm_s16le"}, "mkv", "hevc", "pcm_s16le"),
        ({"container": "mov", "audio": "libmp3lame"}, "mov", "h264", "mp3"),
        ({"video": "libsvtav1", "audio": None, "width": 64}, "mp4", "av1", None),
    ],
)
def test_probe_names_container_codecs_and_counts_frames(
    clip: Make, fields: dict[str, object], container: str, codec: str, audio: str | None
) -> None:
    info = probe(clip(**fields))
    assert (info.container, info.video_codec) == (container, codec)
    assert (info.width, info.height) == (fields.get("width", 96), 64)
    assert info.frame_count == 30
    assert info.frame_rate == 30
    assert info.duration == 1
    assert (info.audio.codec if info.audio else None) == audio
    if info.audio:
        assert (info.audio.channels, info.audio.sample_rate) == (2, 48_000)


def test_frame_rate_of_ntsc_clip_is_exact_rational(clip: Make) -> None:
    info = probe(clip(rate=Fraction(30000, 1001), frames=45))
    assert info.frame_rate == Fraction(30000, 1001)
    assert info.frame_count == 45
    assert info.duration == Fraction(45 * 1001, 30000)


def test_variable_frame_rate_timestamps_come_from_the_packets(clip: Make) -> None:
    pts = [0, 40, 70, 150, 160, 200, 300, 310, 320, 400, 433]
    info = probe(clip(container="mkv", time_base=Fraction(1, 1000), pts=pts, frames=len(pts)))
    assert info.frames.pts == tuple(pts)
    assert info.frames.durations[:-1] == tuple(b - a for a, b in itertools.pairwise(pts))
    assert info.frame_count == len(pts)
    # Mean rate: 11 frames over the shown time, not the rate the header declares.
    assert info.frame_rate == len(pts) / info.duration


def test_rotation_comes_from_the_display_matrix(clip: Make) -> None:
    info = probe(clip(rotation=90))
    assert info.rotation == 90
    assert info.display_matrix == (0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30)
    assert probe(clip()).display_matrix is None


def test_output_size_is_downscaled_to_max_side_with_even_sides(clip: Make) -> None:
    info = probe(clip(width=300, height=170, frames=3), Limits(max_side=101))
    assert (info.output_width, info.output_height) == (100, 56)  # 101 x 57 made even
    small = probe(clip(width=64, height=48, frames=3), Limits(max_side=720))
    assert (small.output_width, small.output_height) == (64, 48)  # never upscaled


def test_probe_accepts_buffers_and_streams_without_copying_them_to_files(clip: Make) -> None:
    data = clip(frames=5)
    counts = {probe(source).frame_count for source in (data, bytearray(data), memoryview(data), io.BytesIO(data))}
    assert counts == {5}


class _Stream:
    """A non-seekable stream that counts what was read from it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.read_bytes = 0

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._data.read(size)
        self.read_bytes += len(chunk)
        return chunk


def test_stream_over_byte_limit_is_refused_while_reading(clip: Make) -> None:
    data = clip(frames=30) * 3 + bytes(3 << 20)
    stream = _Stream(data)
    with pytest.raises(VideoTooLargeError, match=r"larger than the limit of 1\.0 MiB"):
        probe(stream, Limits(max_bytes=1 << 20))
    assert stream.read_bytes < len(data)


def test_buffer_over_byte_limit_is_refused(clip: Make) -> None:
    data = clip()
    with pytest.raises(VideoTooLargeError) as caught:
        probe(data, Limits(max_bytes=len(data) - 1))
    assert caught.value.title == "Video too large"


def test_too_long_clip_is_refused(clip: Make) -> None:
    data = clip(frames=45)  # 1.5 s
    with pytest.raises(VideoTooLongError, match=r"lasts 1.5 s; the limit is 1 s"):
        probe(data, Limits(max_seconds=1))
    assert probe(data, Limits(max_seconds=1.5)).frame_count == 45


def test_too_many_frames_is_refused(clip: Make) -> None:
    with pytest.raises(VideoTooLongError, match="more than 20 frames"):
        probe(clip(frames=30), Limits(max_frames=20))


def test_frames_over_pixel_limit_are_refused_before_decoding(clip: Make) -> None:
    with pytest.raises(FrameTooLargeError, match="96x64"):
        probe(clip(frames=2), Limits(max_pixels=96 * 64 - 1))


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", InvalidVideoError, "empty"),
        (b"\x00\x00\x00", InvalidVideoError, "truncated"),
        (b"hello, this is not a video at all" * 10, UnsupportedVideoError, "not an accepted clip"),
        (b"GIF89a" + bytes(100), UnsupportedVideoError, "GIF data"),
        (b"OggS" + bytes(100), UnsupportedVideoError, "Ogg data"),
        (b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(100), UnsupportedVideoError, "AVI"),
        # A playlist would make FFmpeg open the files it names: never handed to FFmpeg at all.
        (b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:10,\nfile:///etc/passwd\n", UnsupportedVideoError, "not an accepted"),
        (b"\x00\x00\x00\x18ftypisom" + bytes(200), InvalidVideoError, "could not be read"),
        (b"\x1a\x45\xdf\xa3\x42\x82\x84webm" + bytes(200), InvalidVideoError, "could not be read"),
    ],
)
def test_garbage_is_refused_with_typed_errors(data: bytes, error: type[VideoError], message: str) -> None:
    with pytest.raises(error, match=message):
        probe(data)


@pytest.mark.parametrize("faststart", [False, True])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_clip_is_refused(clip: Make, faststart: bool, keep: float) -> None:
    data = clip(frames=30, faststart=faststart)
    with pytest.raises(InvalidVideoError):
        probe(data[: int(len(data) * keep)])


def test_truncated_webm_is_refused_or_counts_only_whole_frames(clip: Make) -> None:
    # Matroska has no index up front: a cut file is a shorter clip of whole frames, or refused.
    data = clip(container="webm", video="libvpx-vp9", audio=None, frames=30)
    try:
        info = probe(data[: len(data) // 2])
    except InvalidVideoError:
        return
    assert 0 < info.frame_count < 30


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"video": "mpeg4"}, "MPEG4"),
        ({"container": "mkv", "video": "mjpeg", "audio": None}, "MJPEG"),
        ({"container": "webm", "video": "libvpx", "audio": "libopus"}, "VP8"),
    ],
)
def test_unsupported_video_codec_is_refused(clip: Make, fields: dict[str, object], named: str) -> None:
    with pytest.raises(UnsupportedVideoError, match=f"video is {named}; send H.264, H.265, VP9, AV1"):
        probe(clip(frames=3, **fields))


def test_file_without_video_is_refused() -> None:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("aac", rate=48_000)
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        frame.sample_rate, frame.pts = 48_000, 0
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    with pytest.raises(InvalidVideoError, match="no video stream"):
        probe(buffer.getvalue())


def test_sniff_tells_containers_apart(clip: Make) -> None:
    assert sniff_container(clip(frames=2)) == "mp4"
    assert sniff_container(clip(frames=2, container="mov")) == "mov"
    assert sniff_container(clip(frames=2, container="webm", video="libvpx-vp9", audio=None)) == "webm"
    assert sniff_container(clip(frames=2, container="mkv")) == "mkv"


def test_mp4_cut_inside_its_index_is_refused(clip: Make) -> None:
    data = clip(frames=30)  # index (moov) at the end
    with pytest.raises(InvalidVideoError, match="truncated"):
        probe(data[:-10])


def test_errors_carry_no_ffmpeg_text(clip: Make) -> None:
    data = clip(frames=10)
    with pytest.raises(VideoError) as caught:
        probe(data[: len(data) // 3])
    assert "Errno" not in str(caught.value)
    assert "/" not in str(caught.value)
