"""The gateway's parts, built once per app from its settings and its Redis client (``app.state.gateway``).

Routes get each part through ``api.deps``; tests replace a part by assigning another object.
``aclose()`` closes every connection the parts hold (the job store, the broker client the
/metrics scrape reads queue lengths with, the Celery producer).
"""

from __future__ import annotations

import redis.asyncio
from celery import Celery

from api.admission import Admission
from api.config import ApiSettings
from api.dedup import Deduplicator
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
        # The Celery queue lives on the broker: the job-store client itself unless ANIMEGAN_BROKER_URL
        # names another Redis. Connections open on first use, so this costs nothing until a scrape.
        self.broker_redis = (
            client
            if settings.broker == settings.redis_url
            else redis.asyncio.Redis.from_url(settings.broker, socket_connect_timeout=2, socket_timeout=2)
        )
        self.images = ImageNormalizer(settings)
        self.reader = JobReader(client)
        self.admission = Admission(settings, client, self.reader)
        self.store_budget = StoreBudget(settings, client)
        self.dedup = Deduplicator(settings, client, self.reader)
        self.sender = TaskSender(celery)
        self.submitter = JobSubmitter(settings, client, self.dedup, self.sender)

    async def aclose(self) -> None:
        if self.broker_redis is not self.redis:
            await self.broker_redis.aclose()
        await self.redis.aclose()
        self.sender.close()
