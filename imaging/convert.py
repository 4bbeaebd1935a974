"""Any Pillow mode to 8-bit RGB: transparency flattened on white, deep greys scaled to 8 bits.

The decoder converts a large image one band of rows at a time (``imaging.decode``): nothing here
makes a copy of more than the image it is given, and the one decision that needs the whole image
(how to scale a deep grey) is made once by ``grey_scale`` and passed to every band.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_DEEP_GREYS = ("I", "F")
_BAND_ROWS = 256


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent areas become white.

    Returns ``image`` itself when it is already RGB without a transparency key.
    16-bit greys (I;16*) are scaled to 8 bits; 32-bit integer greys (I) are read as 16-bit
    when a value exceeds 255, else as 8-bit; float greys (F) as 0-1 when no value exceeds 1,
    else as 0-255.
    """
    converted = to_rgb_or_grey(image)
    return converted if converted.mode == "RGB" else converted.convert("RGB")


def to_rgb_or_grey(image: Image.Image, scale: float | None = None) -> Image.Image:
    """Like to_rgb, but opaque grey modes become 8-bit "L" (one byte a pixel) instead of RGB.

    ``scale``: for a band of a deep grey image, ``grey_scale`` of the whole image (else it is
    judged from ``image`` alone).
    """
    mode = image.mode
    transparent = "transparency" in image.info
    if mode == "RGB" and not transparent:
        return image
    if mode.startswith("I;16") or mode in _DEEP_GREYS:
        return _deep_grey_to_l(image, grey_scale(image) if scale is None else scale)
    if mode in ("RGBA", "RGBa", "LA", "PA") or transparent:
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, (0, 0), rgba)
        return flat
    if mode == "L":
        return image
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def grey_scale(image: Image.Image) -> float:
    """The factor that maps ``image``'s grey values to 0-255 (1.0 for modes that are not deep greys).

    Reads the image a band of rows at a time: no full-size copy.
    """
    if image.mode.startswith("I;16"):
        return 255.0 / 65535.0
    if image.mode not in _DEEP_GREYS:
        return 1.0
    peak = 0.0
    for top in range(0, image.height, _BAND_ROWS):
        values = np.asarray(image.crop((0, top, image.width, min(image.height, top + _BAND_ROWS))))
        finite = values[np.isfinite(values)] if image.mode == "F" else values
        if finite.size:
            peak = max(peak, float(finite.max()))
    if image.mode == "F":
        return 255.0 if peak <= 1.0 else 1.0
    return 255.0 / 65535.0 if peak > 255 else 1.0


def _deep_grey_to_l(image: Image.Image, scale: float) -> Image.Image:
    values = np.asarray(image)
    grey = np.empty(values.shape, dtype=np.uint8)
    # Bands of rows keep the float temporaries small for big 16-bit scans.
    for start in range(0, values.shape[0], _BAND_ROWS):
        band = np.nan_to_num(values[start : start + _BAND_ROWS].astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        grey[start : start + _BAND_ROWS] = np.clip(np.rint(band * scale), 0, 255)
    key = image.info.get("transparency")
    if isinstance(key, int | float):  # a 16-bit PNG's tRNS grey level: those pixels are transparent
        grey[values == key] = 255
    return Image.fromarray(grey)
