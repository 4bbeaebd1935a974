"""video.join: split + run + join keeps frames, timestamps, duration, rotation and sound exactly."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest

from video.join import PieceMismatchError, join_pieces
from video.probe import ClipInfo, probe
from video.segments import Segment, plan_segments, run_segment

Make = Callable[..., bytes]
Packets = Callable[..., list[tuple[Fraction, Fraction]]]
Sound = Callable[..., list[tuple[bytes, Fraction, Fraction]]]
Frames = Callable[[bytes], list[np.ndarray]]
VFR_PTS = [0, 40, 70, 150, 160, 200, 300, 310, 320, 400, 433, 500, 640, 700, 701, 760, 900, 1000, 1033, 1100]


def _invert(frame: np.ndarray) -> np.ndarray:
    return 255 - frame


def _stylized(data: bytes, seconds: Fraction = Fraction(1, 2)) -> tuple[bytes, list[Segment]]:
    plan = plan_segments(probe(data).frames, seconds)
    pieces = [run_segment(data, segment, _invert) for segment in plan]
    return join_pieces(pieces, data), plan


def _same_timing(source: ClipInfo, output: ClipInfo) -> None:
    assert output.frame_count == source.frame_count
    assert output.duration == source.duration
    assert output.frame_rate == source.frame_rate
    assert output.frames.start == source.frames.start
    seconds = [p * output.frames.time_base for p in output.frames.pts]
    assert seconds == [p * source.frames.time_base for p in source.frames.pts]
    lengths = [d * output.frames.time_base for d in output.frames.durations]
    assert lengths == [d * source.frames.time_base for d in source.frames.durations]


@pytest.mark.parametrize(
    "fields",
    [
        {},  # H.264 + AAC in MP4, B-frames, keyframes every 12 frames: segments straddle them
        {"container": "webm", "video": "libvpx-vp9", "audio": "libopus"},
        {"container": "mkv", "video": "libx265", "audio": None},
        {"rate": Fraction(30000, 1001)},
        {"container": "mkv", "time_base": Fraction(1, 1000), "pts": VFR_PTS, "frames": len(VFR_PTS)},
        {"container": "mov", "rotation": 90, "audio": "libmp3lame"},
        {"pts": list(range(7, 47)), "audio": None},  # first frame shown at 7/30 s: an edit list
    ],
    ids=["h264-aac-mp4", "vp9-opus-webm", "hevc-mkv", "ntsc-mp4", "vfr-mkv", "rotated-mov", "late-start-mp4"],
)
def test_split_run_join_keeps_frames_times_duration_and_rotation(
    clip: Make, fields: dict[str, object], video_packets: Packets, decoded_frames: Frames
) -> None:
    data = clip(**{"frames": 40, "gop": 12, **fields})
    output, plan = _stylized(data)
    assert len(plan) > 1
    source, result = probe(data), probe(output)
    assert (result.container, result.video_codec) == ("mp4", "h264")
    _same_timing(source, result)
    assert result.display_matrix == source.display_matrix
    assert result.rotation == source.rotation
    assert (result.width, result.height) == (source.output_width, source.output_height)
    assert [p[0] for p in video_packets(output)] == [p[0] for p in video_packets(data)]
    assert len(decoded_frames(output)) == source.frame_count


@pytest.mark.parametrize(
    "fields", [{}, {"container": "mov", "audio": "libmp3lame"}], ids=["aac-from-mp4", "mp3-from-mov"]
)
def test_sound_that_mp4_carries_is_copied_bit_identical(
    clip: Make, fields: dict[str, object], audio_packets: Sound
) -> None:
    data = clip(frames=40, **fields)
    output, _ = _stylized(data)
    # As stored, edit lists aside: the same packets, bytes, times and durations.
    copied, original = audio_packets(output, ignore_editlist="1"), audio_packets(data, ignore_editlist="1")
    assert len(copied) > 10
    assert copied == original
    assert probe(output).audio == probe(data).audio


def test_opus_from_webm_is_copied_bit_identical_at_the_same_times(clip: Make, audio_packets: Sound) -> None:
    data = clip(frames=40, container="webm", video="libvpx-vp9", audio="libopus")
    output, _ = _stylized(data)
    copied, original = audio_packets(output), audio_packets(data)
    assert len(copied) > 10
    assert [p[0] for p in copied] == [p[0] for p in original]  # the bytes
    assert [p[1] for p in copied] == [p[1] for p in original]  # the times, Opus's pre-skip included
    # WebM times are rounded to the millisecond; MP4 stores durations as differences of times.
    times = [p[1] for p in original]
    assert [p[2] for p in copied[:-1]] == [b - a for a, b in itertools.pairwise(times)]
    assert probe(output).audio == probe(data).audio


def test_sound_that_mp4_cannot_carry_is_reencoded_to_aac(clip: Make, audio_packets: Sound) -> None:
    data = clip(frames=40, container="mkv", audio="pcm_s16le")
    output, _ = _stylized(data)
    info = probe(output)
    assert info.audio is not None
    assert (info.audio.codec, info.audio.channels, info.audio.sample_rate) == ("aac", 2, 48_000)
    length = sum(p[2] for p in audio_packets(output))
    assert abs(length - sum(p[2] for p in audio_packets(data))) < Fraction(50, 1000)


def test_output_frames_are_the_stylized_frames(clip: Make, decoded_frames: Frames) -> None:
    data = clip(frames=20, width=128, height=96, gop=8)
    output, _ = _stylized(data)
    source, result = decoded_frames(data), decoded_frames(output)
    assert len(result) == len(source) == 20
    for before, after in zip(source, result, strict=True):
        assert np.abs((255 - before.astype(int)) - after.astype(int)).mean() < 6


def test_pieces_out_of_order_are_refused(clip: Make) -> None:
    data = clip(frames=40)
    plan = plan_segments(probe(data).frames, Fraction(1, 2))
    pieces = [run_segment(data, segment, _invert) for segment in plan]
    with pytest.raises(PieceMismatchError, match="not at the clip's time"):
        join_pieces([pieces[1], pieces[0], *pieces[2:]], data)
    with pytest.raises(PieceMismatchError, match=f"hold {40 - plan[-1].frames} of the clip's 40 frames"):
        join_pieces(pieces[:-1], data)
    with pytest.raises(PieceMismatchError, match="no pieces"):
        join_pieces([], data)


def test_piece_of_another_size_is_refused(clip: Make) -> None:
    data = clip(frames=20)
    other = clip(frames=20, width=64)
    plan = plan_segments(probe(data).frames, Fraction(1, 3))
    pieces = [run_segment(data, plan[0], _invert), run_segment(other, plan[1], _invert)]
    pieces += [run_segment(data, segment, _invert) for segment in plan[2:]]
    with pytest.raises(PieceMismatchError, match="other settings"):
        join_pieces(pieces, data)


def test_output_puts_its_index_first(clip: Make) -> None:
    output, _ = _stylized(clip(frames=20))
    assert output[4:8] == b"ftyp"
    size = int.from_bytes(output[:4], "big")
    assert output[size + 4 : size + 8] == b"moov"
