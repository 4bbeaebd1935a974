"""Any Pillow mode to 8-bit RGB: transparency flattened on white, deep greys scaled to 8 bits."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent areas become white.

    Returns ``image`` itself when it is already RGB without a transparency key.
    16-bit greys (I;16*) are scaled to 8 bits; 32-bit integer greys (I) are read as 16-bit
    when a value exceeds 255, else as 8-bit; float greys (F) as 0-1 when no value exceeds 1,
    else as 0-255.
    """
    converted = to_rgb_or_grey(image)
    return converted if converted.mode == "RGB" else converted.convert("RGB")


def to_rgb_or_grey(image: Image.Image) -> Image.Image:
    """Like to_rgb, but opaque grey modes become 8-bit "L" (one byte a pixel) instead of RGB."""
    mode = image.mode
    transparent = "transparency" in image.info
    if mode == "RGB" and not transparent:
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _deep_grey_to_l(image)
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


def _deep_grey_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image)
    if image.mode == "F":
        finite = values[np.isfinite(values)]
        scale = 255.0 if finite.size == 0 or float(finite.max()) <= 1.0 else 1.0
    elif image.mode.startswith("I;16") or (values.size and int(values.max()) > 255):
        scale = 255.0 / 65535.0
    else:
        scale = 1.0
    grey = np.empty(values.shape, dtype=np.uint8)
    # Bands of rows keep the float temporaries small for big 16-bit scans.
    for start in range(0, values.shape[0], 256):
        band = np.nan_to_num(values[start : start + 256].astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        grey[start : start + 256] = np.clip(np.rint(band * scale), 0, 255)
    key = image.info.get("transparency")
    if isinstance(key, int | float):  # a 16-bit PNG's tRNS grey level: those pixels are transparent
        grey[values == key] = 255
    return Image.fromarray(grey)
