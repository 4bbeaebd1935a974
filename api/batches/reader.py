"""Reading a batch: its body (GET /batches/{id}) with every job as GET /jobs/{id} shows it, and its poll hint.

A batch, like a job, belongs to the client that created it: another client's is not found.
"""

from __future__ import annotations

from typing import Annotated

import redis.asyncio
from fastapi import Depends

from api.deps import SettingsDep, StoreDep
from api.jobs.admission import Admission
from api.jobs.deps import AdmissionDep, JobReaderDep
from api.jobs.reader import JobReader
from api.problems import ApiError
from jobstore.batch_view import Batch
from jobstore.batches import read_batch
from jobstore.records import is_job_id


class BatchReader:
    """The client's batches, read from the job store."""

    def __init__(self, store: redis.asyncio.Redis, reader: JobReader, admission: Admission, record_ttl_s: int) -> None:
        self.store = store
        self.reader = reader
        self.admission = admission
        self.record_ttl_s = record_ttl_s

    async def describe(self, batch_id: str, client: str) -> Batch | None:
        """The client's batch now (queued jobs with their position), None if unknown, expired or not theirs."""
        if not is_job_id(batch_id):
            return None
        found = await read_batch(self.store, batch_id)
        if found is None or found[0].client != client:
            return None
        batch, records = found
        reader = self.reader
        jobs = [None if r is None else reader.body(r, position=await reader.position(r)) for r in records]
        return Batch.build(batch, jobs)

    async def read(self, batch_id: str, client: str) -> Batch:
        """``describe``, or the 404 problem."""
        batch = await self.describe(batch_id, client)
        if batch is None:
            detail = (
                f"No batch {batch_id[:64]!r}; batches are forgotten {self.record_ttl_s} s after their last job ends."
            )
            raise ApiError("batch-not-found", detail)
        return batch

    async def poll_hint(self, batch: Batch) -> int:
        """Seconds until the batch's next job should end (for Retry-After)."""
        positions = [i.job.queue_position for i in batch.jobs if i.job is not None and i.job.queue_position]
        return await self.admission.poll_hint(min(positions) - 1 if positions else 0)


def get_batch_reader(
    store: StoreDep, reader: JobReaderDep, admission: AdmissionDep, settings: SettingsDep
) -> BatchReader:
    return BatchReader(store, reader, admission, settings.record_ttl_s)


BatchReaderDep = Annotated[BatchReader, Depends(get_batch_reader)]
