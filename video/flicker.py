"""Flicker: how much consecutive output frames change, against how much the input's do.

The engine stylizes each frame alone, so nothing ties one output frame to the next: where the
style amplifies small changes (noise, compression artefacts, a slow pan), still areas of the
output shimmer. The measure is the mean absolute difference between consecutive frames (all
pixels and channels, 0-255), for the output and for the input it came from; their ratio says
how much change the stylization adds (1.0: as much as the input had).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Flicker:
    """Mean absolute change between consecutive frames, input and output, over ``pairs`` frame pairs."""

    input_change: float
    output_change: float
    pairs: int

    @property
    def ratio(self) -> float:
        """Output change per unit of input change (inf for a still input whose output changes)."""
        if self.input_change == 0:
            return 1.0 if self.output_change == 0 else float("inf")
        return self.output_change / self.input_change


class FlickerMeter:
    """Accumulates Flicker one (input, output) frame pair at a time, holding only the previous pair."""

    def __init__(self) -> None:
        self._previous: tuple[np.ndarray, np.ndarray] | None = None
        self._input_total = 0.0
        self._output_total = 0.0
        self._pairs = 0

    def add(self, input_frame: np.ndarray, output_frame: np.ndarray) -> None:
        """Add the next frame of the input and the output made from it (same shape, uint8)."""
        if input_frame.shape != output_frame.shape:
            raise ValueError(f"input {input_frame.shape} and output {output_frame.shape} differ in shape")
        if self._previous is not None:
            self._input_total += _mean_change(self._previous[0], input_frame)
            self._output_total += _mean_change(self._previous[1], output_frame)
            self._pairs += 1
        self._previous = (input_frame, output_frame)

    def result(self) -> Flicker:
        pairs = max(self._pairs, 1)
        return Flicker(self._input_total / pairs, self._output_total / pairs, self._pairs)


def measure_flicker(frames: Iterable[tuple[np.ndarray, np.ndarray]]) -> Flicker:
    """Flicker of (input, output) frame pairs in order."""
    meter = FlickerMeter()
    for input_frame, output_frame in frames:
        meter.add(input_frame, output_frame)
    return meter.result()


def _mean_change(earlier: np.ndarray, later: np.ndarray) -> float:
    if earlier.shape != later.shape:
        raise ValueError("consecutive frames differ in shape")
    return float(np.abs(later.astype(np.int16) - earlier.astype(np.int16)).mean())
