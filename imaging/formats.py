"""Which image formats are accepted, judged by their leading (magic) bytes, and how results are named.

Accepted uploads are JPEG, PNG, WebP and HEIC/HEIF, never by a file name or a Content-Type: the
signature must be followed by what that format requires next (the PNG IHDR chunk, a JPEG marker, a
WebP VP8/VP8L/VP8X chunk, a HEIF ``ftyp`` box naming HEVC images: ``imaging.heif``); anything else,
including AVIF, GIF, TIFF, BMP, SVG, HTML and files that merely start with an image signature, is
refused as unsupported even where Pillow could decode it. Results are png, jpeg, webp or avif.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from imaging import heif
from imaging.errors import InvalidImageError, UnsupportedFormatError

ALLOWED_FORMATS: Final = ("JPEG", "PNG", "WEBP", "HEIF")
OUTPUT_FORMATS: Final = ("png", "jpeg", "webp", "avif")
CONTENT_TYPES: Final[dict[str, str]] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "avif": "image/avif",
}
FILE_EXTENSIONS: Final[dict[str, str]] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "avif": ".avif"}
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


def sniff_format(data: bytes) -> str | None:
    """Return "JPEG", "PNG", "WEBP" or "HEIF" when the leading bytes are that format's signature, else None.

    Needs the first ``SNIFF_BYTES`` bytes (HEIF: its whole ``ftyp`` box); fewer may be too few to decide.
    """
    if data[:16] == _PNG_HEAD:
        return "PNG"
    # SOI, then the first marker of the stream (APPn, DQT, DHT, SOF, COM, ...).
    if data[:3] == b"\xff\xd8\xff" and len(data) > 3 and data[3] >= 0xC0:
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and data[12:16] in _WEBP_CHUNKS:
        return "WEBP"
    if heif.is_heif(data):
        return "HEIF"
    return None


@dataclass(frozen=True)
class Declared:
    """What an image's header declares, read without decoding: its size and what its pixels are."""

    format: str
    width: int
    height: int
    # PNG: the IHDR colour type and bit depth; JPEG: the number of components; WebP, HEIF: 0.
    color_type: int = 0
    bit_depth: int = 8


def declared(data: bytes) -> Declared | None:
    """The size an accepted image declares in its header, or None when the header cannot be read."""
    fmt = sniff_format(data)
    if fmt == "PNG" and len(data) >= 26:
        return Declared(fmt, _u32(data, 16), _u32(data, 20), color_type=data[25], bit_depth=data[24])
    if fmt == "WEBP":
        return _webp_declared(data)
    if fmt == "JPEG":
        return _jpeg_declared(data)
    if fmt == "HEIF":
        size = heif.declared_size(data)
        return Declared(fmt, *size) if size else None
    return None


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


def _webp_declared(data: bytes) -> Declared | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return Declared(
            "WEBP", int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        )
    if chunk == b"VP8X" and len(data) >= 30:
        return Declared("WEBP", int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return Declared("WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    return None


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_declared(data: bytes) -> Declared | None:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _JPEG_SOF:
            if at + 10 > len(data):
                return None
            height, width = int.from_bytes(data[at + 5 : at + 7], "big"), int.from_bytes(data[at + 7 : at + 9], "big")
            return Declared("JPEG", width, height, color_type=data[at + 9])
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            at += 2
            continue
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def require_allowed_format(data: bytes) -> str:
    """The format ``data`` is in by its magic bytes; raises InvalidImageError or UnsupportedFormatError."""
    if not data:
        raise InvalidImageError("The upload is empty: no image data was received.")
    fmt = sniff_format(data)
    if fmt is not None:
        return fmt
    if _is_cut_signature(data):
        raise InvalidImageError("The image data ends inside its header: the file is truncated.")
    detected = _name_other_format(data)
    what = f"{detected} data" if detected else "This data"
    raise UnsupportedFormatError(f"{what} is not an accepted image; send a JPEG, PNG, WebP or HEIC image.")


def _is_cut_signature(data: bytes) -> bool:
    """True when ``data`` is a proper prefix of an allowed format's signature."""
    n = len(data)
    if n >= SNIFF_BYTES:
        return heif.is_cut_heif(data)
    if data == _PNG_HEAD[:n]:
        return True
    if n <= 3 and data == b"\xff\xd8\xff"[:n]:
        return True
    riff_ok = data[:4] == b"RIFF"[: min(n, 4)]
    return (riff_ok and data[8:12] == b"WEBP"[: max(0, min(n, 12) - 8)]) or heif.is_cut_heif(data)


def _name_other_format(data: bytes) -> str | None:
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        return "AVIF" if data[8:12] in (b"avif", b"avis") else "HEIF/AVIF"
    text = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    return None
