"""video.segments: the segment plan, and segment runs that decode only their frames, exactly."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest

from video.decoding import decode_range
from video.errors import InvalidVideoError
from video.frametable import FrameTable
from video.picture import to_model
from video.probe import Limits, probe
from video.segments import Segment, plan_segments, run_segment, still_frame

Make = Callable[..., bytes]


def _table(pts: list[int], time_base: Fraction = Fraction(1, 1000)) -> FrameTable:
    durations = [b - a for a, b in itertools.pairwise(pts)] + [pts[-1] - pts[-2]]
    return FrameTable(time_base, tuple(pts), tuple(durations), ((pts[0], pts[0]),))


def test_plan_cuts_about_two_seconds_by_frame_index() -> None:
    table = _table([round(i * 1000 / 30) for i in range(300)])  # 10 s at 30 fps
    plan = plan_segments(table)
    assert [s.frames for s in plan] == [60] * 5
    assert [s.first_frame for s in plan] == [0, 60, 120, 180, 240]
    assert [s.index for s in plan] == [0, 1, 2, 3, 4]
    assert plan[1].as_dict() == {"index": 1, "first_frame": 60, "frames": 60}


def test_plan_covers_every_frame_once_and_merges_a_short_tail() -> None:
    table = _table([round(i * 1000 / 30) for i in range(130)])  # 4.33 s: the 0.33 s tail joins the last
    plan = plan_segments(table)
    assert [(s.first_frame, s.frames) for s in plan] == [(0, 60), (60, 70)]
    longer = plan_segments(_table([round(i * 1000 / 30) for i in range(100)]))  # 3.33 s: a 1.33 s tail stays
    assert [(s.first_frame, s.frames) for s in longer] == [(0, 60), (60, 40)]


def test_plan_of_variable_rate_clip_cuts_by_time() -> None:
    # 1 s at 10 fps, then 1 s at 50 fps, then 1 s at 10 fps: segments of 1 s hold 10, 50, 10 frames.
    pts = [i * 100 for i in range(10)] + [1000 + i * 20 for i in range(50)] + [2000 + i * 100 for i in range(10)]
    plan = plan_segments(_table(pts), Fraction(1))
    assert [s.frames for s in plan] == [10, 50, 10]


def test_plan_is_deterministic_from_the_probe(clip: Make) -> None:
    data = clip(frames=75)
    assert plan_segments(probe(data).frames) == plan_segments(probe(bytes(data)).frames)
    assert sum(s.frames for s in plan_segments(probe(data).frames, 1)) == 75


def test_plan_of_a_clip_shorter_than_a_segment_is_one_segment() -> None:
    assert plan_segments(_table([0, 33, 67])) == [Segment(0, 0, 3)]


class _Recorder:
    """A stylize callable that records the frames it is handed and inverts them."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        assert frame.dtype == np.uint8
        assert frame.ndim == 3
        assert frame.shape[2] == 3
        assert frame.flags.c_contiguous
        self.frames.append(frame.copy())
        return 255 - frame


def test_segment_straddling_keyframes_hands_exactly_its_frames_in_order(clip: Make) -> None:
    data = clip(frames=40, gop=12, bframes=2)  # keyframes at 0, 12, 24, 36
    recorder = _Recorder()
    run_segment(data, Segment(1, 17, 15), recorder)  # starts mid-GOP, ends mid-GOP
    assert len(recorder.frames) == 15
    for offset, handed in enumerate(recorder.frames):
        np.testing.assert_array_equal(handed, still_frame(data, 17 + offset))


def test_seek_that_lands_past_the_keyframe_falls_back_to_decoding_from_the_start(clip: Make) -> None:
    data = clip(frames=40, gop=12)
    table = probe(data).frames
    # A keyframe "before the start" in decode time: FFmpeg's seek can only land after it.
    misleading = dataclasses.replace(table, keyframes=((table.pts[0], table.keyframes[0][1] - 10**6),))
    frames = list(decode_range(data, "mp4", misleading, 17, 5))
    assert [frame.pts for frame in frames] == list(table.pts[17:22])
    expected = [still_frame(data, i) for i in range(17, 22)]
    for frame, still in zip(frames, expected, strict=True):
        np.testing.assert_array_equal(to_model(frame, (96, 64), 0), still)


def test_frame_in_segment_equals_the_frame_as_a_still(clip: Make) -> None:
    """Temporal determinism: what the model is handed does not depend on the segment around it."""
    data = clip(frames=30, gop=10)
    alone = still_frame(data, 14)
    recorder = _Recorder()
    run_segment(data, Segment(0, 10, 10), recorder)
    np.testing.assert_array_equal(recorder.frames[4], alone)
    other = _Recorder()
    run_segment(data, Segment(0, 0, 30), other)
    np.testing.assert_array_equal(other.frames[14], alone)


def test_frames_reach_the_model_upright_and_pieces_keep_the_stored_layout(clip: Make) -> None:
    data = clip(frames=6, rotation=90, width=96, height=64)
    recorder = _Recorder()
    piece = run_segment(data, Segment(0, 0, 6), recorder)
    # Stored 96 wide, 64 high; shown turned 90 degrees: the model sees 64 wide, 96 high.
    assert recorder.frames[0].shape == (96, 64, 3)
    stored = np.asarray(still_frame(data, 0, limits=Limits()))
    assert stored.shape == (96, 64, 3)
    info = probe(piece)
    assert (info.width, info.height) == (96, 64)


def test_upright_frame_is_the_stored_frame_turned_by_the_display_matrix(clip: Make) -> None:
    plain = still_frame(clip(frames=3), 1)
    turned = still_frame(clip(frames=3, rotation=90), 1)
    # The same pixels, turned a quarter counter-clockwise (the codec is lossy; compare loosely).
    difference = np.abs(np.rot90(plain, 1).astype(int) - turned.astype(int)).mean()
    assert difference < 2
    assert np.abs(plain[:64, :64].astype(int) - turned[:64, :64].astype(int)).mean() > 10


def test_segment_frames_are_downscaled_to_max_side_even(clip: Make) -> None:
    recorder = _Recorder()
    run_segment(clip(frames=4, width=200, height=120), Segment(0, 0, 4), recorder, limits=Limits(max_side=99))
    assert recorder.frames[0].shape == (58, 98, 3)  # 99 x 59.4 -> 99 x 59 -> even


def test_stylize_returning_another_shape_is_a_programming_error(clip: Make) -> None:
    with pytest.raises(ValueError, match="stylize returned"):
        run_segment(clip(frames=3), Segment(0, 0, 3), lambda frame: frame[:-2])


def test_segment_outside_the_clip_is_refused(clip: Make) -> None:
    with pytest.raises(ValueError, match="outside the clip"):
        run_segment(clip(frames=10), Segment(0, 5, 6), lambda frame: frame)


def test_segment_of_corrupt_frames_is_refused(clip: Make) -> None:
    data = bytearray(clip(frames=30, gop=30, audio=None, faststart=True))
    # Overwrite the middle of the media data (after the index) with noise.
    middle = len(data) // 2
    data[middle : middle + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidVideoError):
        run_segment(bytes(data), Segment(0, 0, 30), lambda frame: frame)
