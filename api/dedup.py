"""Deduplication: an identical request is answered by the job that has (or is computing) its result.

Two identities point at a job (``dedup:{digest}`` keys): the normalized pixels with style and
format (``request_digest``), and the upload bytes with style, format and max side
(``upload_digest``), which answers a repeated upload before it is decoded again. A failed job, or
a succeeded one whose result expired, answers nothing: the next request makes a new job.
"""

from __future__ import annotations

import redis.asyncio

from api.config import ApiSettings
from api.job_reader import JobReader
from jobstore.keys import dedup_key
from jobstore.records import JobRecord, as_text
from jobstore.states import JobState


class Deduplicator:
    """Finds or claims the job for a request identity."""

    def __init__(self, settings: ApiSettings, client: redis.asyncio.Redis, reader: JobReader) -> None:
        self.ttl_s = settings.record_ttl_s
        self.redis = client
        self.reader = reader

    async def find_existing(self, upload_digest: str) -> JobRecord | None:
        """The job an earlier upload of the same bytes (same style and format) created, if it can answer."""
        found = await self.redis.get(dedup_key(upload_digest))
        record = await self.reader.read(as_text(found)) if found else None
        return record if record is not None and await self.can_answer(record) else None

    async def claim(self, digest: str, job_id: str) -> JobRecord | None:
        """The live job for ``digest``, or None after pointing the digest at ``job_id``."""
        key = dedup_key(digest)
        if await self.redis.set(key, job_id, nx=True, ex=self.ttl_s):
            return None
        other = await self.redis.get(key)
        record = await self.reader.read(as_text(other)) if other else None
        if record is not None and await self.can_answer(record):
            return record
        await self.redis.set(key, job_id, ex=self.ttl_s)
        return None

    async def point(self, digest: str, job_id: str) -> None:
        """Let later requests with ``digest`` find ``job_id``."""
        await self.redis.set(dedup_key(digest), job_id, ex=self.ttl_s)

    async def can_answer(self, record: JobRecord) -> bool:
        """A failed job, or a succeeded one whose result is gone, cannot answer a new request."""
        if record.state is JobState.FAILED:
            return False
        if record.state is JobState.SUCCEEDED:
            return await self.reader.has_result(record.id)
        return True
