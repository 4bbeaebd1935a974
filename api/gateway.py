"""The gateway's parts, built once per app from its settings and its Redis client (``app.state.gateway``).

Routes get each part through ``api.deps``; tests replace a part by assigning another object.
``aclose()`` closes every connection the parts hold (the job store, the Celery producer, the
event streams' pub/sub).
"""

from __future__ import annotations

import redis.asyncio
from celery import Celery

from api.admission import Admission
from api.config import ApiSettings
from api.dedup import Deduplicator
from api.event_hub import EventHub
from api.images import ImageNormalizer
from api.job_reader import JobReader
from api.store_budget import StoreBudget
from api.submission import JobSubmitter
from api.task_sender import TaskSender


class Gateway:
    """Everything the routes use: image normalisation, admission, dedup, the job reader, the task sender."""

    def __init__(self, settings: ApiSettings, client: redis.asyncio.Redis, celery: Celery) -> None:
        self.settings = settings
        self.redis = client
        self.images = ImageNormalizer(settings)
        self.reader = JobReader(client)
        self.admission = Admission(settings, client, self.reader)
        self.store_budget = StoreBudget(settings, client)
        self.dedup = Deduplicator(client, self.reader)
        self.sender = TaskSender(celery)
        self.submitter = JobSubmitter(settings, client, self.reader, self.admission, self.sender)
        # Event streams' pub/sub connection (opened on the first stream) and their caps.
        self.events = EventHub(settings)

    async def aclose(self) -> None:
        await self.events.aclose()
        await self.redis.aclose()
        self.sender.close()
