"""video.flicker: mean absolute change between consecutive frames, output against input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from video.flicker import FlickerMeter, measure_flicker


def _frames(values: list[int]) -> list[np.ndarray]:
    return [np.full((4, 6, 3), v, np.uint8) for v in values]


def test_flicker_compares_output_change_with_input_change() -> None:
    inputs, outputs = _frames([10, 12, 14, 16]), _frames([100, 110, 100, 110])
    result = measure_flicker(zip(inputs, outputs, strict=True))
    assert result.pairs == 3
    assert result.input_change == 2
    assert result.output_change == 10
    assert result.ratio == 5


def test_still_input_with_still_output_has_ratio_one_and_with_changing_output_infinite() -> None:
    still = _frames([50, 50, 50])
    assert measure_flicker(zip(still, still, strict=True)).ratio == 1
    assert math.isinf(measure_flicker(zip(still, _frames([0, 9, 0]), strict=True)).ratio)


def test_change_is_measured_without_uint8_wraparound() -> None:
    result = measure_flicker(zip(_frames([0, 255]), _frames([255, 0]), strict=True))
    assert (result.input_change, result.output_change) == (255, 255)


def test_meter_holds_only_the_previous_pair_and_refuses_mismatched_shapes() -> None:
    meter = FlickerMeter()
    meter.add(*_frames([1, 2]))
    with pytest.raises(ValueError, match="differ in shape"):
        meter.add(np.zeros((4, 6, 3), np.uint8), np.zeros((5, 6, 3), np.uint8))
    assert meter.result().pairs == 0
