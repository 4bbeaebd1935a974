"""A zip built while it is sent: one stored entry at a time, bytes handed out as soon as written.

``zipfile`` writes to a sink that cannot seek, so each entry's sizes follow it in a data
descriptor and nothing is ever rewritten: after an entry is written, its bytes leave the sink.
Results are already compressed images, so entries are stored, not deflated. The gateway holds at
most one result (and its copy in the sink) at a time, whatever the batch's size; no temporary file.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass


class _Sink(io.RawIOBase):
    """Write-only, unseekable: collects what zipfile writes until ``take`` hands it out."""

    def __init__(self) -> None:
        self._chunks = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._chunks += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._chunks)
        self._chunks.clear()
        return out


@dataclass(frozen=True)
class ZipMember:
    name: str
    job_id: str
    modified_at: float  # unix seconds (the job's end)


async def stream_zip(
    members: Sequence[ZipMember], read: Callable[[str], Awaitable[bytes | None]]
) -> AsyncIterator[bytes]:
    """The zip of ``members``' results, chunk by chunk; a result that is gone (expired) is left out."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for member in members:
            data = await read(member.job_id)
            if data is None:
                continue
            stamp = time.gmtime(max(member.modified_at, 315532800.0))[:6]  # zip dates start in 1980
            archive.writestr(zipfile.ZipInfo(member.name, date_time=stamp), data)
            del data
            yield sink.take()
    yield sink.take()
