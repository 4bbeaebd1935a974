"""Uploaded bytes to an upright RGB picture: validate, check the pixel limit, orient, normalise, downscale.

The gateway runs this on every upload before anything is queued, so its memory footprint is a
goal of its own.

The rules, as users see them:

- Accepted formats are JPEG, PNG, WebP and HEIC/HEIF, judged by the leading (magic) bytes
  (``imaging.formats``; HEIF: ``imaging.heif``).
- The pixel count is checked from the header, before the image data is decoded, so a
  decompression bomb costs nothing (a HEIF's, from its ``ispe`` boxes, before libheif even opens
  the file). Zero-sized images are refused.
- Truncated or corrupt data is refused (truncated images are never "repaired"), and so is
  PNG text metadata beyond Pillow's ``MAX_TEXT_CHUNK`` / ``MAX_TEXT_MEMORY`` limits.
- The EXIF orientation is applied (all eight values), so the result is upright; a HEIF's
  rotation and mirroring boxes are applied by libheif instead (its EXIF orientation is ignored,
  as the HEIF standard says).
- Every mode becomes 8-bit RGB; transparent areas become white (alpha is flattened on a
  white background); 16-bit greys are scaled to 8 bits.
- Images whose longest side exceeds ``max_side`` are downscaled with LANCZOS, aspect kept,
  to exactly ``max_side`` on the longest (oriented) side; images are never upscaled. Large
  JPEGs are decoded at a reduced scale first (libjpeg "draft" mode), then resized exactly.
- Memory: the mode conversion and the resize run in bands of rows (``resample_in_bands``), so a
  decode holds the decoded pixels plus a few MB, never a converted full-size copy;
  ``decode_memory`` tells from the header alone how much a decode will hold, for the gateway's
  memory budget. (PNG, WebP and HEIF have no reduced-scale decode in Pillow; a WebP costs the most.)
- Portrait mode (``decode_portrait``) takes one square instead: the centre square, or a box in
  the upright original's pixels (``imaging.crops``), resampled once to 512x512 (LANCZOS; up
  or down) straight from the original pixels.
"""

from __future__ import annotations

import logging
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Final

from PIL import ExifTags, Image

from imaging.convert import grey_scale, to_rgb_or_grey
from imaging.crops import PORTRAIT_SIDE, CropBox, Region, centre_square, stored_region
from imaging.errors import ImageTooLargeError, InvalidImageError
from imaging.formats import Declared, declared, require_allowed_format
from imaging.heif import register_decoder

logger = logging.getLogger(__name__)

# Pillow raises all of these for hostile or broken input; each means "cannot decode".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError, TypeError)
# The transposition ImageOps.exif_transpose applies for each EXIF orientation value.
_ORIENTATION_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES: Final = frozenset({5, 6, 7, 8})
# About this many bytes of source rows are converted and resampled at a time.
BAND_BYTES: Final = 8 * 1024 * 1024
# Pillow decodes a WebP as an animation: two RGBA canvases in libwebp, the frame's bytes, the image.
WEBP_BYTES_PER_PIXEL: Final = 16
# libheif's YCbCr planes and RGB output, then Pillow's image: 8.4 bytes a pixel measured (3024x2016).
HEIF_BYTES_PER_PIXEL: Final = 10


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image ready for the model, and what it was before downscaling."""

    image: Image.Image
    format: str
    original_width: int
    original_height: int

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def decode_image(data: bytes, *, max_side: int = 1024, max_pixels: int = 40_000_000) -> DecodedImage:
    """Decode uploaded bytes into an upright RGB image whose longest side is at most ``max_side``.

    Raises:
        UnsupportedFormatError: not JPEG, PNG, WebP or HEIC/HEIF by magic bytes.
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels.
        InvalidImageError: empty, truncated, corrupt, or zero-sized.
    """
    if max_side < 1 or max_pixels < 1:
        raise ValueError("max_side and max_pixels must be positive")
    return _decode(data, max_pixels, lambda width, height: (fit_within(width, height, max_side), None))


def decode_portrait(
    data: bytes, *, crop: CropBox | None = None, side: int = PORTRAIT_SIDE, max_pixels: int = 40_000_000
) -> DecodedImage:
    """Decode uploaded bytes into a ``side`` x ``side`` RGB square: ``crop`` of the upright image, or its centre.

    The square is resampled once (LANCZOS) from the original pixels, whatever their size.
    Raises what ``decode_image`` raises, and CropError when ``crop`` is not inside the image.
    """
    if side < 1 or max_pixels < 1:
        raise ValueError("side and max_pixels must be positive")

    def frame(width: int, height: int) -> tuple[tuple[int, int], CropBox]:
        box = crop or centre_square(width, height)
        box.require_inside(width, height)
        return (side, side), box

    return _decode(data, max_pixels, frame)


# Given the upright size: the size to produce, and the upright box to take it from (None: all).
_Framing = Callable[[int, int], tuple[tuple[int, int], CropBox | None]]


def _decode(data: bytes, max_pixels: int, frame: _Framing) -> DecodedImage:
    fmt = require_allowed_format(data)
    if fmt == "HEIF":
        _check_heif_header(data, max_pixels)
    try:
        with Image.open(BytesIO(data), formats=[fmt]) as img:
            width, height = img.size
            _check_size(width, height, max_pixels)
            if fmt != "JPEG":
                # A PNG may carry its EXIF after the pixels: decode (and fail) first. A JPEG's EXIF
                # precedes them, and its orientation must be known before a reduced-scale decode.
                img.load()
            orientation = _orientation(img)
            swaps = orientation in _SWAPS_SIDES
            upright_target, box = frame(*((height, width) if swaps else (width, height)))
            target = (upright_target[1], upright_target[0]) if swaps else upright_target
            region = (0.0, 0.0, float(width), float(height))
            if box is not None:
                region = stored_region(box, orientation, width, height)
            region = _draft(img, fmt, target, region)
            img.load()
            if img.size == target and region == (0.0, 0.0, float(img.width), float(img.height)):
                rgb = to_rgb_or_grey(img)
            else:
                rgb = resample_in_bands(img, target, region)
            if rgb.mode != "RGB":
                rgb = rgb.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            f"The image declares too many pixels; the limit is {_megapixels(max_pixels)}."
        ) from exc
    except _DECODE_ERRORS as exc:
        logger.debug("image decode failed", extra={"format": fmt}, exc_info=True)
        raise InvalidImageError(f"The {fmt} image could not be decoded: {_describe_failure(exc)}.") from exc
    # Orienting the resampled image gives the same result as orienting first (the resampling is
    # separable and the region was mapped into the stored grid), at a fraction of the memory.
    if orientation in _ORIENTATION_TRANSPOSE:
        rgb = rgb.transpose(_ORIENTATION_TRANSPOSE[orientation])
    if swaps:
        width, height = height, width
    rgb.info = {}
    return DecodedImage(image=rgb, format=fmt, original_width=width, original_height=height)


def _check_heif_header(data: bytes, max_pixels: int) -> None:
    """Refuse a HEIF from its header alone: libheif parses the whole container on open, so the size
    is checked before it runs."""
    header = declared(data)
    if header is None:
        raise InvalidImageError("The HEIF image could not be decoded: its header declares no image size.")
    _check_size(header.width, header.height, max_pixels)
    register_decoder()


def resample_in_bands(img: Image.Image, target: tuple[int, int], region: Region) -> Image.Image:
    """``img``'s ``region`` resampled (LANCZOS) to ``target`` and converted to RGB or L, in bands of rows.

    The same two passes as ``Image.resize`` (horizontal, then vertical), but the horizontal pass
    runs on one band of rows at a time, each converted (alpha flattened, greys scaled) just before:
    besides ``img`` this holds one band and a strip of target width, never a converted full-size
    copy (Pillow's own resize of RGBA makes a premultiplied one). Flattening before resampling
    gives the colours of flattening the whole image first.
    """
    x0, y0, x1, y1 = region
    width, height = target
    # The rows the vertical pass reads: LANCZOS reaches 3 source pixels (scaled when shrinking).
    reach = 3.0 * max(1.0, (y1 - y0) / height) + 1.0
    top, bottom = max(0, math.floor(y0 - reach)), min(img.height, math.ceil(y1 + reach))
    scale = grey_scale(img)
    rows = max(16, BAND_BYTES // (4 * img.width))
    strip: Image.Image | None = None
    for start in range(top, bottom, rows):
        stop = min(bottom, start + rows)
        band = to_rgb_or_grey(img.crop((0, start, img.width, stop)), scale)
        narrow = band.resize((width, stop - start), Image.Resampling.LANCZOS, box=(x0, 0, x1, stop - start))
        del band
        if strip is None:
            strip = Image.new(narrow.mode, (width, bottom - top))
        strip.paste(narrow, (0, start - top))
    assert strip is not None  # the region has at least one row
    return strip.resize(target, Image.Resampling.LANCZOS, box=(0.0, y0 - top, float(width), y1 - top))


def decode_memory(data: bytes, *, max_side: int) -> int:
    """Bytes a decode of ``data`` holds at its peak, judged from the header alone (0 if unreadable).

    Pillow's pixels (its RGB, RGBA and LA images take 4 bytes a pixel; its WebP decoder, which
    decodes every file as an animation, about ``WEBP_BYTES_PER_PIXEL``), a JPEG's reduced-scale
    decode, the strip and the bands of ``resample_in_bands``.
    """
    header = declared(data)
    if header is None:
        return 0
    width, height = header.width, header.height
    scale = 1
    if header.format == "JPEG":
        target = fit_within(width, height, max_side)
        # Pillow's draft: the largest of 1/2, 1/4, 1/8 that keeps the target's size (scene mode).
        while scale < 8 and min(width // (2 * scale * target[0]), height // (2 * scale * target[1])) >= 1:
            scale *= 2
    pixels = math.ceil(width / scale) * math.ceil(height / scale)
    per_pixel = _bytes_per_pixel(header)
    strip = 4 * min(width, max(max_side, PORTRAIT_SIDE)) * math.ceil(height / scale)
    return pixels * per_pixel + strip + 4 * BAND_BYTES


def _bytes_per_pixel(header: Declared) -> int:
    if header.format == "WEBP":
        return WEBP_BYTES_PER_PIXEL
    if header.format == "HEIF":
        return HEIF_BYTES_PER_PIXEL
    if header.format == "PNG":
        if header.color_type == 0:
            return 2 if header.bit_depth == 16 else 1  # I;16, else L or 1
        if header.color_type == 3:
            return 1  # P
    return 4


def _draft(img: Image.Image, fmt: str, target: tuple[int, int], region: Region) -> Region:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the region stays at least ``target`` there.

    Returns the region in the pixels that will be decoded.
    """
    if fmt != "JPEG":
        return region
    width, height = img.size
    # The whole frame's size at which the region would be exactly the target.
    needed = (
        math.ceil(width * target[0] / (region[2] - region[0])),
        math.ceil(height * target[1] / (region[3] - region[1])),
    )
    if min(width // needed[0], height // needed[1]) < 2:
        return region
    drafted = img.draft("RGB", needed)
    if drafted is None:
        return region
    scale = drafted[1][2] / width
    return region[0] * scale, region[1] * scale, region[2] * scale, region[3] * scale


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size that fits ``max_side`` on the longest side, aspect kept, sides rounded, never upscaled."""
    if max(width, height) <= max_side:
        return width, height
    if width >= height:
        return max_side, max(1, round(height * max_side / width))
    return max(1, round(width * max_side / height)), max_side


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise InvalidImageError(f"The image has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width}x{height} pixels ({_megapixels(width * height)}); "
            f"the limit is {_megapixels(max_pixels)}."
        )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


def _orientation(img: Image.Image) -> int:
    """EXIF orientation (1-8); unreadable EXIF counts as upright rather than refusing the photo."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        logger.debug("unreadable EXIF ignored", exc_info=True)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _describe_failure(exc: BaseException) -> str:
    text = str(exc).lower()
    if "max_text" in text or "text chunks" in text:
        return "its text metadata is too large"
    if isinstance(exc, EOFError) or "truncated" in text:
        return "the data is truncated"
    return "the data is truncated or corrupt"
