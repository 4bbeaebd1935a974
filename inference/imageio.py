"""Image bytes <-> PIL images: sniff, validate, orient, normalise to RGB, downscale, encode.

Torch-free on purpose (pillow, numpy, stdlib only): the gateway imports this module to
validate and downscale uploads before anything is queued, and its memory footprint is a
goal of its own. Must not import torch, onnxruntime, or any web or queue package.

The rules, as users see them:

- Accepted formats are JPEG, PNG and WebP, judged by the leading (magic) bytes, never by
  a file name or a Content-Type. The signature must be followed by what that format
  requires next (the PNG IHDR chunk, a JPEG marker, a WebP VP8/VP8L/VP8X chunk); anything
  else, including GIF, TIFF, BMP, SVG, HTML and files that merely start with an image
  signature, is refused as unsupported even where Pillow could decode it.
- The pixel count is checked from the header, before the image data is decoded, so a
  decompression bomb costs nothing. Zero-sized images are refused.
- Truncated or corrupt data is refused (truncated images are never "repaired"), and so is
  PNG text metadata beyond Pillow's ``MAX_TEXT_CHUNK`` / ``MAX_TEXT_MEMORY`` limits.
- The EXIF orientation is applied (all eight values), so the result is upright.
- Every mode becomes 8-bit RGB; transparent areas become white (alpha is flattened on a
  white background); 16-bit greys are scaled to 8 bits.
- Images whose longest side exceeds ``max_side`` are downscaled with LANCZOS, aspect kept,
  to exactly ``max_side`` on the longest (oriented) side; images are never upscaled. Large
  JPEGs are decoded at a reduced scale first (libjpeg "draft" mode), then resized exactly.
- Portrait mode (``decode_portrait``) takes one square instead: the centre square, or a box in
  the upright original's pixels (``inference.crops``), resampled once to 512x512 (LANCZOS; up
  or down) straight from the original pixels.
- Output is a fresh encode: no EXIF, ICC profile, XMP or text from the input is carried over.
"""

from __future__ import annotations

import hashlib
import logging
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Final

import numpy as np
from PIL import ExifTags, Image

from inference.crops import PORTRAIT_SIDE, CropBox, Region, centre_square, stored_region
from inference.errors import ImageTooLargeError, InvalidImageError, UnsupportedFormatError

logger = logging.getLogger(__name__)

ALLOWED_FORMATS: Final = ("JPEG", "PNG", "WEBP")
OUTPUT_FORMATS: Final = ("png", "jpeg", "webp")
CONTENT_TYPES: Final[dict[str, str]] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
FILE_EXTENSIONS: Final[dict[str, str]] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
# How many leading bytes sniff_format needs to decide.
SNIFF_BYTES: Final = 16

_PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"
_WEBP_CHUNKS = (b"VP8 ", b"VP8L", b"VP8X")
# Named only to make the refusal message useful; none of these is ever decoded.
_OTHER_SIGNATURES = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
)
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


def sniff_format(data: bytes) -> str | None:
    """Return "JPEG", "PNG" or "WEBP" when the leading bytes are that format's signature, else None.

    Needs the first ``SNIFF_BYTES`` bytes; fewer may be too few to decide.
    """
    if data[:16] == _PNG_HEAD:
        return "PNG"
    # SOI, then the first marker of the stream (APPn, DQT, DHT, SOF, COM, ...).
    if data[:3] == b"\xff\xd8\xff" and len(data) > 3 and data[3] >= 0xC0:
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and data[12:16] in _WEBP_CHUNKS:
        return "WEBP"
    return None


def decode_image(data: bytes, *, max_side: int = 1024, max_pixels: int = 40_000_000) -> DecodedImage:
    """Decode uploaded bytes into an upright RGB image whose longest side is at most ``max_side``.

    Raises:
        UnsupportedFormatError: not JPEG, PNG or WebP by magic bytes.
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
    fmt = _require_allowed_format(data)
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
            # Greys stay one channel until after the resize: a quarter of the memory.
            rgb = _to_rgb_or_grey(img)
            if rgb.size != target or region != (0.0, 0.0, float(rgb.width), float(rgb.height)):
                rgb = rgb.resize(target, Image.Resampling.LANCZOS, box=region)
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


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent areas become white.

    Returns ``image`` itself when it is already RGB without a transparency key.
    16-bit greys (I;16*) are scaled to 8 bits; 32-bit integer greys (I) are read as 16-bit
    when a value exceeds 255, else as 8-bit; float greys (F) as 0-1 when no value exceeds 1,
    else as 0-255.
    """
    converted = _to_rgb_or_grey(image)
    return converted if converted.mode == "RGB" else converted.convert("RGB")


def _to_rgb_or_grey(image: Image.Image) -> Image.Image:
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


def encode_image(image: Image.Image, fmt: str, *, quality: int = 92) -> bytes:
    """Encode ``image`` as png, jpeg or webp in memory, with no metadata (EXIF, ICC, XMP, text)."""
    key = fmt.lower()
    if key not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(OUTPUT_FORMATS)}")
    if not 1 <= quality <= 100:
        raise ValueError("quality must be between 1 and 100")
    rgb = to_rgb(image)
    if rgb.info:
        # Encoders fall back to image.info for some metadata (PNG takes its ICC profile from
        # there), so write from an image that has none; copy only when the caller's has some.
        rgb = rgb.copy() if rgb is image else rgb
        rgb.info = {}
    buffer = BytesIO()
    if key == "png":
        rgb.save(buffer, "PNG", compress_level=6)
    elif key == "jpeg":
        rgb.save(buffer, "JPEG", quality=quality)
    else:
        rgb.save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue()


def image_digest(image: Image.Image) -> str:
    """SHA-256 of mode, size and raw pixels: equal for equal images whatever file they came from."""
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _require_allowed_format(data: bytes) -> str:
    if not data:
        raise InvalidImageError("The upload is empty: no image data was received.")
    fmt = sniff_format(data)
    if fmt is not None:
        return fmt
    if _is_cut_signature(data):
        raise InvalidImageError("The image data ends inside its header: the file is truncated.")
    detected = _name_other_format(data)
    what = f"{detected} data" if detected else "This data"
    raise UnsupportedFormatError(f"{what} is not an accepted image; send a JPEG, PNG or WebP image.")


def _is_cut_signature(data: bytes) -> bool:
    """True when ``data`` is a proper prefix of an allowed format's signature."""
    n = len(data)
    if n >= SNIFF_BYTES:
        return False
    if data == _PNG_HEAD[:n]:
        return True
    if n <= 3 and data == b"\xff\xd8\xff"[:n]:
        return True
    riff_ok = data[:4] == b"RIFF"[: min(n, 4)]
    return riff_ok and data[8:12] == b"WEBP"[: max(0, min(n, 12) - 8)]


def _name_other_format(data: bytes) -> str | None:
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF"
    text = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    return None


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
