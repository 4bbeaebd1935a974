"""HEIC/HEIF uploads (what phones send): the signature, the size the header declares, the decoder.

A HEIF file is an ISO base media file: a ``ftyp`` box whose major brand (or, under the generic
``mif1``/``msf1``, a compatible brand) names HEVC-coded images (``heic``, ``heix``, ``hevc``...).
AVIF shares the container but not the codec and is not accepted. The size is read from the
``ispe`` (image spatial extents) properties inside the ``meta`` box, before anything is decoded;
a file may hold several images (tiles of a grid, thumbnails, depth maps), so the largest declared
one is what the pixel limit and the decode memory weigh. Decoding is pillow-heif (libheif, which
applies the file's rotation and mirroring, ``irot``/``imir``; pillow-heif then reports EXIF
orientation 1, so nothing is turned twice).
"""

from __future__ import annotations

from typing import Final

HEIF_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_GENERIC_BRANDS: Final = frozenset({b"mif1", b"msf1"})
# Boxes whose children are read on the way to ``ispe``; ``meta`` is a full box (4 bytes of version
# and flags before its children).
_CONTAINERS: Final = {b"meta": 4, b"iprp": 0, b"ipco": 0}
# Enough to reach the meta box of any phone's file (it precedes the pixel data); bounds the walk.
HEADER_BYTES: Final = 256 * 1024
_MAX_BOXES: Final = 4096


def is_heif(data: bytes) -> bool:
    """True when ``data`` starts with a ``ftyp`` box naming HEVC-coded HEIF images."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return False
    size = int.from_bytes(data[0:4], "big")
    if not 16 <= size <= min(len(data), 256):
        return False
    major = data[8:12]
    if major in HEIF_BRANDS:
        return True
    compatible = {data[at : at + 4] for at in range(16, size - 3, 4)}
    return major in _GENERIC_BRANDS and bool(compatible & HEIF_BRANDS)


def is_cut_heif(data: bytes) -> bool:
    """True when ``data`` ends inside what could be the start of a HEIF ``ftyp`` box (a truncated upload)."""
    n = len(data)
    if data[: min(n, 3)] != bytes(min(n, 3)):  # the box size (under 16 MiB) starts with zero bytes
        return False
    if n <= 4:
        return True
    if data[4 : min(n, 8)] != b"ftyp"[: min(n, 8) - 4]:
        return False
    if n <= 8:
        return True
    major = data[8:12]
    if not any(brand.startswith(major) for brand in HEIF_BRANDS | _GENERIC_BRANDS):
        return False
    return n < max(16, int.from_bytes(data[0:4], "big"))


def declared_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of the largest image the header declares (its ``ispe`` boxes), or None."""
    sizes: list[tuple[int, int]] = []
    _walk(data[:HEADER_BYTES], 0, min(len(data), HEADER_BYTES), sizes, [0])
    if not sizes:
        return None
    return max(sizes, key=lambda s: s[0] * s[1])


def _walk(data: bytes, start: int, end: int, sizes: list[tuple[int, int]], seen: list[int]) -> None:
    at = start
    while at + 8 <= end and seen[0] < _MAX_BOXES:
        seen[0] += 1
        size, kind, header = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8], 8
        if size == 1:
            if at + 16 > end:
                return
            size, header = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            return
        if kind == b"ispe" and size >= header + 12:
            body = at + header + 4  # version and flags
            sizes.append(
                (int.from_bytes(data[body : body + 4], "big"), int.from_bytes(data[body + 4 : body + 8], "big"))
            )
        elif kind in _CONTAINERS:
            _walk(data, at + header + _CONTAINERS[kind], at + size, sizes, seen)
        at += size


_registered = False


def register_decoder() -> None:
    """Teach Pillow to open HEIF (pillow-heif's plugin), once per process, on first use."""
    global _registered
    if not _registered:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _registered = True
