"""GET /jobs/{id}/result of a video in Redis: the MP4, streamed a chunk at a time, never whole in the gateway.

The result is 1 MiB chunks (``jobstore.video_blobs``): the response reads them one after the other,
and answers a single byte range (``Range: bytes=a-b``, ``a-``, ``-n``) with 206 and
``Content-Range``, as players ask for when they seek (some refuse to play without it); a range past
the end is 416 ``range-not-satisfiable``. A result in the object store is streamed (or redirected
to) like a photo's (``api.jobs.routes``); its presigned link answers ranges itself.
"""

from __future__ import annotations

import re

import redis.asyncio
from starlette.responses import Response, StreamingResponse

from api.problems import ApiError
from jobstore.keys import result_chunk_key
from jobstore.records import JobRecord
from jobstore.video_blobs import MP4_TYPE, result_chunks

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single-range ``Range`` header; None for the whole body (no header, or
    one this server ignores: several ranges, another unit, or an invalid one whose last byte comes before its
    first, which RFC 9110 14.1.1 makes the header invalid, not unsatisfiable). Raises 416 for a range past the end."""
    match = _RANGE.match(header or "")
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first and last and int(last) < int(first):
        return None
    if not first:  # the last n bytes
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    if start >= size or end <= start:
        raise ApiError(
            "range-not-satisfiable",
            f"The range {header!r} is outside the result's {size} bytes.",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


async def video_result(
    record: JobRecord, range_header: str | None, store: redis.asyncio.Redis, headers: dict[str, str]
) -> Response:
    """The video's MP4 as a streamed response (206 for a range); 404 ``result-expired`` once it is gone."""
    size = record.output_bytes or 0
    if not await store.exists(result_chunk_key(record.id, 0)):
        raise ApiError("result-expired", f"The result was kept {record.result_ttl_s} s and has expired.")
    span = byte_range(range_header, size)
    start, end = span or (0, size)
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start)}
    body = result_chunks(store, record.id, size, start, end)
    if span is None:
        return StreamingResponse(body, media_type=MP4_TYPE, headers=headers)
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(body, status_code=206, media_type=MP4_TYPE, headers=headers)
