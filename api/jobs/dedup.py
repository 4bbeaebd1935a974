"""Deduplication: an identical request of the same client is answered by the job that has (or is
computing) its result.

Two identities point at a job (``dedup:{client}:{digest}`` keys): the normalized pixels with style
and format (``request_digest``), and the upload bytes with style, format and max side
(``upload_digest``), which answers a repeated upload before it is decoded again. Both are scoped
to the client: the same photo from someone else makes a job of its own and reveals nothing. A
failed job, or a succeeded one whose result expired, answers nothing: the next request makes a
new job. The pointers are written by the job store's ADMIT script, atomically with the job;
this class only reads them, for the answer before decoding.
"""

from __future__ import annotations

import redis.asyncio

from api.jobs.reader import JobReader
from jobstore.keys import dedup_key
from jobstore.records import JobRecord, JobState, as_text


class Deduplicator:
    """Finds the client's job for a request identity."""

    def __init__(self, client: redis.asyncio.Redis, reader: JobReader) -> None:
        self.redis = client
        self.reader = reader

    async def find_existing(self, client: str, upload_digest: str) -> JobRecord | None:
        """The job an earlier upload of the same bytes (same style and format) created, if it can answer."""
        found = await self.redis.get(dedup_key(client, upload_digest))
        record = await self.reader.read(as_text(found), client) if found else None
        return record if record is not None and await self.can_answer(record) else None

    async def can_answer(self, record: JobRecord) -> bool:
        """A failed job, or a succeeded one whose result is gone, cannot answer a new request."""
        if record.state is JobState.FAILED:
            return False
        if record.state is JobState.SUCCEEDED:
            return await self.reader.has_result(record)
        return True
