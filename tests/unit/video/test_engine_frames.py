"""Video frames through the real engine: a frame of the output is the still stylization of that frame.

The engine is the real one (``inference.pipeline.Stylizer`` with the hayao weights), passed in by
this test as the ``stylize`` callable, as a worker will: the video package never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.pipeline import Stylizer
from video.join import join_pieces
from video.probe import probe
from video.segments import plan_segments, run_segment, still_frame

Make = Callable[..., bytes]


@pytest.fixture(scope="module")
def hayao(hayao_weights: Path) -> Stylizer:
    return Stylizer.load("hayao", weights_path=hayao_weights, threads=1)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_output_frame_matches_still_stylization_after_the_codec(
    clip: Make, decoded_frames: Callable[[bytes], list[np.ndarray]], hayao: Stylizer
) -> None:
    data = clip(frames=12, width=160, height=96, gop=5, audio=None)
    handed: dict[int, np.ndarray] = {}

    def stylize(frame: np.ndarray) -> np.ndarray:
        out = np.asarray(hayao.stylize(Image.fromarray(frame)))
        handed[len(handed)] = out
        return out

    plan = plan_segments(probe(data).frames, Fraction(1, 5))
    assert len(plan) == 2
    output = join_pieces([run_segment(data, segment, stylize) for segment in plan], data)
    frames = decoded_frames(output)
    assert len(frames) == 12
    for index in (3, 8):  # one frame in each segment, neither on a keyframe
        still = np.asarray(hayao.stylize(Image.fromarray(still_frame(data, index))))
        # The engine is deterministic per frame: inside a segment or alone, the same pixels.
        np.testing.assert_array_equal(handed[index], still)
        assert _psnr(frames[index], still) >= 28.0
