"""The gateway's reads of the job store: records, queue positions, results, live workers.

Results are Redis values, or with ANIMEGAN_S3_BUCKET objects in the store (``jobstore.blobs``): the
reader streams those in chunks (``open_result``), reads one whole for a zip (``read_result``), and
signs their download links (``body``: the job as clients see it, ``links.download`` included).

Reads never write: a job whose worker vanished is handed back or failed by the workers' sweeper
(``worker.sweeper``), not by whoever happens to read it. A job belongs to the client that
submitted it: ``read`` answers None for another client's job, exactly as for an unknown one, so
no response reveals that someone else's job exists. A video's parts (its segments and join) are
records of their own, shown through their video only (``read_parts``, ``view``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio

from api.problems import ApiError
from jobstore.blobs import in_object_store, result_link, result_name
from jobstore.heartbeats import Heartbeat, live_heartbeats
from jobstore.job_view import Job, ResultLink
from jobstore.keys import SERVICE_TIME_KEY, WAITING_KEY, WORKERS_KEY, client_queue_key, job_key, result_key
from jobstore.objectstore import Download, ObjectStore, StoreError
from jobstore.queue import AsyncQueueScripts, position_call, position_call_for
from jobstore.records import JobKind, JobRecord, JobState, as_text, is_job_id, now
from jobstore.video_view import VideoJob
from jobstore.videos import Part, add_read_parts, parse_parts

logger = logging.getLogger(__name__)


def job_not_found(job_id: str, record_ttl_s: int) -> ApiError:
    """404 ``job-not-found``: what ``read`` answering None means to a client."""
    return ApiError("job-not-found", f"No job {job_id[:64]!r}; jobs are forgotten {record_ttl_s} s after they end.")


class JobReader:
    """Reads jobs and what the workers publish, from the asyncio Redis client of the gateway."""

    def __init__(
        self, client: redis.asyncio.Redis, objects: ObjectStore | None = None, *, url_ttl_s: float = 3600
    ) -> None:
        self.redis = client
        self.scripts = AsyncQueueScripts(client)
        self.objects = objects
        self.url_ttl_s = url_ttl_s

    async def read(self, job_id: str, client: str | None = None) -> JobRecord | None:
        """The job's record, or None when the id is not one of ours, the job is unknown or expired,
        or (with ``client``) it belongs to another client."""
        if not is_job_id(job_id):
            return None
        raw = await self.redis.hgetall(job_key(job_id))
        record = JobRecord.from_hash(raw) if raw else None
        if record is not None and client is not None and record.client != client:
            return None
        if record is not None and record.parent is not None:
            return None  # a video's segment or join is shown through its video only
        return record

    async def read_parts(self, video: JobRecord) -> list[Part]:
        """A video's segments and join as their records say now."""
        async with self.redis.pipeline(transaction=False) as pipe:
            ids = add_read_parts(pipe, video)
            return parse_parts(ids, await pipe.execute())

    async def view(self, record: JobRecord, *, deduplicated: bool = False) -> Job | VideoJob:
        """The job as GET /jobs/{id} shows it now: with its queue position, and a video with its parts."""
        if record.job_kind is not JobKind.VIDEO:
            return self.body(record, position=await self.position(record), deduplicated=deduplicated)
        parts = await self.read_parts(record)
        position = await self.video_position(record, parts)
        return VideoJob.from_record(record, parts, position=position, download=self._link(record))

    async def video_position(self, video: JobRecord, parts: Sequence[Part]) -> int | None:
        """A queued video's place: that of its first segment waiting (1 = next to start)."""
        if video.state is not JobState.QUEUED:
            return None
        first = next((p for p in parts if p.state is JobState.QUEUED), None)
        if first is None:
            return None
        keys, args = position_call_for(first.id, video.client)
        found = await self.scripts.position(keys=keys, args=args)
        return int(found) if found else None

    async def position(self, record: JobRecord) -> int | None:
        """1 for the next job to start (round-robin across clients), None once it left the queue."""
        if record.state is not JobState.QUEUED:
            return None
        keys, args = position_call(record)
        found = await self.scripts.position(keys=keys, args=args)
        return int(found) if found else None

    async def first_position_of(self, client: str) -> int | None:
        """The position of the client's next waiting job, None when none waits."""
        head = await self.redis.lindex(client_queue_key(client), 0)
        if head is None:
            return None
        keys, args = position_call_for(as_text(head), client)
        found = await self.scripts.position(keys=keys, args=args)
        return int(found) if found else None

    async def read_result(self, job_id: str) -> bytes | None:
        """The whole result: the Redis value, else the object (raises StoreError when the store is down)."""
        data = await self.redis.get(result_key(job_id))
        if data is None and self.objects is not None:
            return await self.objects.get_async(result_name(job_id))
        return data.encode() if isinstance(data, str) else data

    async def open_result(self, record: JobRecord) -> Download | None:
        """A succeeded job's result in the object store as a stream of chunks (bounded memory), None once
        its time passed or it is gone. Raises StoreError when the store is down."""
        if self.objects is None or not self.result_kept(record):
            return None
        return await self.objects.open_async(result_name(record.id))

    async def has_result(self, record: JobRecord) -> bool:
        if in_object_store(record):
            return self.result_kept(record)  # deleted on time by the reaper (jobstore.blobs)
        return bool(await self.redis.exists(result_key(record.id)))

    @staticmethod
    def result_kept(record: JobRecord) -> bool:
        """Whether a succeeded job's result is still within its TTL."""
        return record.finished_at is not None and now() < record.finished_at + record.result_ttl_s

    def body(self, record: JobRecord, *, position: int | None = None, deduplicated: bool = False) -> Job:
        """The photo's job as GET /jobs/{id} shows it; with its result in the store, its presigned download link."""
        return Job.from_record(record, position=position, deduplicated=deduplicated, download=self._link(record))

    def _link(self, record: JobRecord) -> ResultLink | None:
        if self.objects is None or not in_object_store(record):
            return None
        try:
            return result_link(self.objects, record, self.url_ttl_s)
        except StoreError:
            logger.warning("could not sign a download link; the body names the gateway's URL only")
            return None

    async def live_workers(self) -> list[Heartbeat]:
        raw = await self.redis.hgetall(WORKERS_KEY)
        return live_heartbeats(raw)

    async def waiting_count(self) -> int:
        """The queue depth: jobs waiting for a worker (the ``waiting`` list; running jobs left it)."""
        return int(await self.redis.llen(WAITING_KEY))

    async def service_time_s(self) -> float | None:
        """The workers' recent average inference seconds, None before the first job."""
        value = await self.redis.get(SERVICE_TIME_KEY)
        return float(value) if value else None
