"""Portrait framing: the square a face style is run on, and where that square lies in the file.

The face styles were trained on 512x512 face crops (the reference's ``face2paint`` centre-crops
to a square and resizes to 512), so portrait mode stylizes one square of the photo at
``PORTRAIT_SIDE``: the centre square, or a box ``x,y,w,h`` the client gives in the upright
original's pixels (after EXIF orientation, before any downscaling). Scene mode, the default,
stylizes the whole (downscaled) photo.

Runtime-free (stdlib only), like ``imaging.decode``, which decodes the box: the gateway
checks the text of a box before the upload is decoded, and the CLI shares the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from imaging.errors import CropError

MODES: Final = ("scene", "portrait")
DEFAULT_MODE: Final = "scene"
PORTRAIT_SIDE: Final = 512
# A box bigger than any image the pixel limit lets through is refused from its text.
_MAX_COORDINATE: Final = 1_000_000

# (x0, y0, x1, y1), fractional where a reduced-scale decode divides it.
Region = tuple[float, float, float, float]


@dataclass(frozen=True)
class CropBox:
    """A square of the upright image: left, top, side (pixels, all integers)."""

    x: int
    y: int
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.width},{self.height}"

    def require_inside(self, width: int, height: int) -> None:
        """Raise CropError unless the box lies within a ``width`` x ``height`` image."""
        if self.x + self.width > width or self.y + self.height > height:
            raise CropError(
                f"The crop box {self} (x,y,w,h) reaches past the {width}x{height} image "
                f"(after EXIF orientation); it must end by x={width}, y={height}."
            )


def parse_crop(text: str) -> CropBox:
    """``"x,y,w,h"`` (whole pixels, w = h > 0) as a CropBox; raises CropError naming what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(p.isdecimal() and p.isascii() for p in parts):
        raise CropError(f"The crop box {text[:64]!r} is not four whole numbers x,y,w,h (e.g. 120,40,600,600).")
    x, y, w, h = (int(p) for p in parts)
    if max(x, y, w, h) > _MAX_COORDINATE:
        raise CropError(f"The crop box {text[:64]!r} is beyond any image this service accepts.")
    if w == 0 or h == 0:
        raise CropError(f"The crop box {x},{y},{w},{h} has no area; its width and height must be at least 1.")
    if w != h:
        raise CropError(
            f"The crop box {x},{y},{w},{h} is {w}x{h}; portrait mode needs a square (w = h), "
            f"which is stylized at {PORTRAIT_SIDE}x{PORTRAIT_SIDE}."
        )
    return CropBox(x, y, w, h)


def centre_square(width: int, height: int) -> CropBox:
    """The largest centred square, as face2paint crops it."""
    side = min(width, height)
    return CropBox((width - side) // 2, (height - side) // 2, side, side)


def stored_region(box: CropBox, orientation: int, width: int, height: int) -> Region:
    """Where an upright-image box lies in the file's pixel grid (``width`` x ``height`` as stored).

    ``orientation`` is the EXIF value (1-8): cropping this region of the stored pixels, then
    applying the orientation, gives the box of the upright image.
    """
    x0, y0, x1, y1 = box.x, box.y, box.x + box.width, box.y + box.height
    regions = {
        2: (width - x1, y0, width - x0, y1),  # mirrored
        3: (width - x1, height - y1, width - x0, height - y0),  # rotated 180
        4: (x0, height - y1, x1, height - y0),  # flipped
        5: (y0, x0, y1, x1),  # transposed
        6: (y0, height - x1, y1, height - x0),  # stored turned 90 anticlockwise
        7: (width - y1, height - x1, width - y0, height - x0),  # transversed
        8: (width - y1, x0, width - y0, x1),  # stored turned 90 clockwise
    }
    x0s, y0s, x1s, y1s = regions.get(orientation, (x0, y0, x1, y1))
    return float(x0s), float(y0s), float(x1s), float(y1s)
