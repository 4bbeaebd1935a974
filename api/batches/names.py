"""File names of a batch: the upload's name as shown, and the names of the results in the zip.

A client's file name is untrusted text: only its last path component is kept (either slash),
control and format characters are dropped, surrounding spaces and dots are stripped and the length
is bounded; nothing is left means ``image-<n>``. In the zip each result is named after its upload
with the output format's extension, in a form every common file system can unpack:

- NFC-normalised (a decomposed and a composed "é" are one name, as on macOS);
- no character Windows forbids in a name (``<>:"|?*``): a colon would make ``C:evil.png`` a
  drive-relative path and ``a:stream.png`` an alternate data stream; each becomes ``_``;
- no Windows device name (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM1``-``COM9``, ``LPT1``-``LPT9``,
  whatever follows the first dot): such a name gets a leading ``_``;
- at most 255 bytes of UTF-8 (the limit of ext4, APFS and NTFS alike), the extension kept;
- unique, case-insensitively, by ``-2``, ``-3`` ... in file order.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

MAX_NAME_CHARS = 120
MAX_ZIP_NAME_BYTES = 255
_FORBIDDEN = re.compile(r'[<>:"|?*]')
_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul"} | {f"{kind}{n}" for kind in ("com", "lpt") for n in (*"123456789", "¹", "²", "³")}
)


def display_name(raw: str | None, index: int) -> str:
    """The upload's name as a batch entry shows it (and the zip names from)."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if not unicodedata.category(c).startswith("C"))
    name = name.strip().strip(". ")[:MAX_NAME_CHARS].strip()
    return name or f"image-{index + 1}"


def zip_names(names: Sequence[str], extension: str) -> list[str]:
    """Unique result names for ``names`` (display names, in file order), each ending in ``extension``."""
    used: set[str] = set()
    out = []
    for index, name in enumerate(names):
        stem = _safe_stem(name) or f"image-{index + 1}"
        candidate, n = _fit(stem, "", extension), 1
        while candidate.casefold() in used:
            n += 1
            candidate = _fit(stem, f"-{n}", extension)
        used.add(candidate.casefold())
        out.append(candidate)
    return out


def _safe_stem(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    stem = name.rsplit(".", 1)[0].strip() if "." in name else name
    stem = _FORBIDDEN.sub("_", stem).strip(" .")
    if stem.split(".", 1)[0].strip().casefold() in _DEVICE_NAMES:
        stem = "_" + stem
    return stem


def _fit(stem: str, suffix: str, extension: str) -> str:
    """``stem + suffix + extension``, the stem cut (at a character) so the whole fits MAX_ZIP_NAME_BYTES."""
    room = MAX_ZIP_NAME_BYTES - len((suffix + extension).encode())
    cut = stem.encode()[:room].decode(errors="ignore").rstrip(" .")
    return cut + suffix + extension
