"""Decoded video frames to the model's RGB arrays and back to frames the encoder takes.

Frames are downscaled like photos (the longest side to the max side, aspect kept, LANCZOS, never
upscaled), then to even sides, which 4:2:0 H.264 needs. The model sees each frame upright, as
a photo is stylized after its EXIF orientation: a clip shot sideways carries a display matrix,
and its frames are turned by it before stylizing and turned back after, so the output keeps the
input's pixel layout and the same display matrix (players rotate it the same way). A matrix that
mirrors is not undone: such frames are stylized as stored.

Colours: the decoder's frames are read with the matrix they are tagged with (untagged: BT.601,
FFmpeg's default); the output is written as BT.709, limited range, and tagged so.
"""

from __future__ import annotations

from typing import Final

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from imaging.decode import fit_within

OUTPUT_PIXEL_FORMAT: Final = "yuv420p"


def output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The stored frame size after downscaling to ``max_side``: aspect kept, both sides even (at least 2)."""
    fitted_width, fitted_height = fit_within(width, height, max_side)
    return max(2, fitted_width - fitted_width % 2), max(2, fitted_height - fitted_height % 2)


def upright_turns(rotation: int, matrix: tuple[int, ...] | None) -> int:
    """Quarter turns counter-clockwise that show stored pixels upright (0 for a mirroring matrix)."""
    if matrix is not None and matrix[0] * matrix[4] - matrix[1] * matrix[3] < 0:
        return 0
    return (round(rotation / 90) % 4) if rotation % 90 == 0 else 0


def upright_size(size: tuple[int, int], turns: int) -> tuple[int, int]:
    """The size of frames of ``size`` (as stored) once turned upright by ``turns`` quarter turns."""
    return (size[1], size[0]) if turns % 2 else size


def to_model(frame: av.VideoFrame, size: tuple[int, int], turns: int) -> np.ndarray:
    """The frame at ``size`` (stored orientation), turned upright, as a contiguous HxWx3 uint8 array."""
    rgb = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation=Interpolation.LANCZOS)
    # Rows of a frame are padded for alignment: the array is a strided view until copied.
    return np.ascontiguousarray(np.rot90(rgb.to_ndarray(), turns))


def to_encoder(upright: np.ndarray, turns: int) -> av.VideoFrame:
    """A stylized upright array turned back to the stored orientation, as a BT.709 4:2:0 frame."""
    stored = np.ascontiguousarray(np.rot90(upright, -turns)) if turns else upright
    frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
    return frame.reformat(format=OUTPUT_PIXEL_FORMAT, dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
