"""Clip bytes in memory: a reader FFmpeg can seek in, the byte limit, the container judged by its leading bytes.

A clip arrives as bytes, a bytearray, a memoryview, a readable stream, or a ``RandomAccess``: bytes
held elsewhere (the job store's chunks, an object in a bucket) that are read by range as the
demuxer asks for them, so a process never holds the whole clip. A stream is read into memory in
chunks and refused as soon as it passes the byte limit (an MP4's index may sit at its end, so the
demuxer needs random access); a buffer is used in place, never copied whole. Nothing is ever
written to a file.

FFmpeg never guesses the container: the leading bytes decide between its ``mov`` demuxer (MP4,
MOV) and its ``matroska`` demuxer (WebM, Matroska), and only that one is opened. Format probing
would also try playlist and concat demuxers, which open other files and URLs named inside the
data. For the same reason every attempt of a demuxer to open another resource is refused.
"""

from __future__ import annotations

import io
from typing import Any, Final, Protocol, runtime_checkable

import av
import av.container

from video.errors import InvalidVideoError, UnsupportedVideoError, VideoTooLargeError

# Container name (as the service reports it) -> FFmpeg demuxer.
DEMUXERS: Final[dict[str, str]] = {"mp4": "mov", "mov": "mov", "webm": "matroska", "mkv": "matroska"}
# Bytes needed to tell the containers apart (a Matroska DocType sits within its first 40 bytes).
SNIFF_BYTES: Final = 64
_CHUNK: Final = 1 << 20
_EBML: Final = b"\x1a\x45\xdf\xa3"
# Top-level atoms a QuickTime file without an ftyp box may start with.
_QUICKTIME_ATOMS: Final = (b"moov", b"mdat", b"wide", b"free", b"skip")
# Named only to make the refusal useful; none of these is ever opened.
_OTHER_SIGNATURES: Final = (
    (b"RIFF", "AVI or WAV"),
    (b"FLV", "FLV"),
    (b"OggS", "Ogg"),
    (b"GIF8", "GIF"),
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"ID3", "MP3"),
    (b"\x00\x00\x01\xba", "MPEG program stream"),
)

Buffer = bytes | bytearray | memoryview


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@runtime_checkable
class RandomAccess(Protocol):
    """Clip bytes read by range: ``size`` in all, ``read_at`` up to ``size`` bytes from ``offset``
    (fewer only at the end). Implementations bound what they keep in memory."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, size: int, /) -> bytes: ...


# Bytes a clip can be demuxed from: in memory, or read by range.
ClipData = Buffer | RandomAccess
Source = Buffer | Readable | RandomAccess


class ByteReader(io.RawIOBase):
    """A read-only, seekable file over a buffer or a RandomAccess: reads copy only the bytes asked for.

    Over a BytesIO it reads what has been written into it so far (a muxer rereading its output).
    """

    def __init__(self, data: ClipData | io.BytesIO) -> None:
        super().__init__()
        self._ranged = data if isinstance(data, RandomAccess) else None
        self._data = data if isinstance(data, io.BytesIO | RandomAccess) else memoryview(data).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        if self._ranged is not None:
            total = self._ranged.size
            end = total if size is None or size < 0 else min(total, self._pos + size)
            chunk = self._ranged.read_at(self._pos, end - self._pos) if end > self._pos else b""
            self._pos += len(chunk)
            return chunk
        with self._view() as view:
            end = len(view) if size is None or size < 0 else min(len(view), self._pos + size)
            chunk = view[self._pos : end].tobytes() if end > self._pos else b""
        self._pos += len(chunk)
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        if self._ranged is not None:
            size = self._ranged.size
        else:
            with self._view() as view:
                size = len(view)
        self._pos = max(0, {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: size}[whence] + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _view(self) -> memoryview:
        # A BytesIO cannot grow while a view of it exists: each view is released after one use.
        assert not isinstance(self._data, RandomAccess)
        return self._data.getbuffer() if isinstance(self._data, io.BytesIO) else self._data[:]


def data_size(data: ClipData) -> int:
    """How many bytes the clip has."""
    return data.size if isinstance(data, RandomAccess) else memoryview(data).nbytes


def read_at(data: ClipData, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes of the clip from ``offset`` (fewer at its end)."""
    if isinstance(data, RandomAccess):
        return data.read_at(offset, max(0, min(size, data.size - offset)))
    return memoryview(data).cast("B")[offset : offset + size].tobytes()


def read_source(source: Source, max_bytes: int | None = None) -> ClipData:
    """The clip's bytes: a buffer or a RandomAccess as it is, a stream read in chunks; VideoTooLargeError past
    ``max_bytes``."""
    if isinstance(source, bytes | bytearray | memoryview | RandomAccess):
        size = data_size(source)
        if max_bytes is not None and size > max_bytes:
            raise VideoTooLargeError(f"The clip is {_mib(size)}; the limit is {_mib(max_bytes)}.")
        return source
    data = bytearray()
    while chunk := source.read(_CHUNK):
        data += chunk
        if max_bytes is not None and len(data) > max_bytes:
            raise VideoTooLargeError(f"The clip is larger than the limit of {_mib(max_bytes)}.")
    return data


def sniff_container(data: ClipData) -> str:
    """ "mp4", "mov", "webm" or "mkv" by the leading bytes; raises InvalidVideoError or UnsupportedVideoError."""
    head = read_at(data, 0, SNIFF_BYTES)
    if not head:
        raise InvalidVideoError("The upload is empty: no video data was received.")
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[4:8] in _QUICKTIME_ATOMS:
        return "mov"
    if head.startswith(_EBML):
        if b"webm" in head:
            return "webm"
        if b"matroska" in head:
            return "mkv"
    if len(head) < 12 and (_EBML.startswith(head[:4]) or b"ftyp".startswith(head[4:8])):
        raise InvalidVideoError("The clip ends inside its header: the file is truncated.")
    detected = next((name for signature, name in _OTHER_SIGNATURES if head.startswith(signature)), None)
    what = f"{detected} data" if detected else "This data"
    raise UnsupportedVideoError(f"{what} is not an accepted clip; send an MP4, MOV, WebM or MKV video.")


def require_whole(data: ClipData, container: str) -> None:
    """Raise InvalidVideoError when an MP4/MOV's top-level boxes run past the end of the data (a cut file).

    FFmpeg reads a cut MP4 as far as it goes and says nothing, so the box sizes decide.
    Matroska is checked by its demuxer as it goes.
    """
    if DEMUXERS[container] != "mov":
        return
    offset, end = 0, data_size(data)
    while offset < end:
        if end - offset < 8:
            raise InvalidVideoError("The clip ends inside a box header: the file is truncated.")
        header = read_at(data, offset, 16)
        size = int.from_bytes(header[:4], "big")
        if size == 1 and end - offset >= 16:
            size = int.from_bytes(header[8:16], "big")
        elif size == 0:  # the last box, up to the end
            return
        if size < 8 or offset + size > end:
            raise InvalidVideoError("The clip is cut short: the file is truncated.")
        offset += size


def open_input(data: ClipData, container: str) -> av.container.InputContainer:
    """Open ``data`` with the demuxer of ``container`` only; InvalidVideoError when FFmpeg cannot read it."""
    try:
        return av.open(ByteReader(data), "r", format=DEMUXERS[container], io_open=_refuse_io_open)
    except (av.FFmpegError, ValueError, EOFError) as exc:
        raise InvalidVideoError(f"The {container.upper()} clip could not be read: it is truncated or corrupt.") from exc


def _refuse_io_open(url: str, flags: int, options: dict[str, Any]) -> Any:
    # A demuxer following a reference inside the data (an external data reference, a playlist
    # entry) would read local files or the network: clips are self-contained or refused.
    raise PermissionError("clips may not refer to other resources")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"
