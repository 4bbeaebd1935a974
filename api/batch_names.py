"""File names of a batch: the upload's name as shown, and the names of the results in the zip.

A client's file name is untrusted text: only its last path component is kept (either slash),
control and format characters are dropped, surrounding spaces and dots are stripped and the length
is bounded; nothing is left means ``image-<n>``. In the zip each result is named after its upload
with the output format's extension, and names made unique (case-insensitively, as on the file
systems a zip is unpacked on) by ``-2``, ``-3`` ... in file order.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

MAX_NAME_CHARS = 120


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
        stem = name.rsplit(".", 1)[0].strip() if "." in name else name
        stem = stem or f"image-{index + 1}"
        candidate, n = stem + extension, 1
        while candidate.lower() in used:
            n += 1
            candidate = f"{stem}-{n}{extension}"
        used.add(candidate.lower())
        out.append(candidate)
    return out
