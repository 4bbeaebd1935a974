"""The gateway's Celery producer: sends the task by name with only the job id (never the image).

A job whose message could not be sent is marked failed at once (``TaskSender.send`` answers
False), so no record waits for a message that does not exist; POST /stylize then answers 503
``broker-unavailable``, while a batch, already accepted, carries that job as failed.
"""

from __future__ import annotations

import logging

import redis.asyncio
from celery import Celery
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from api.config import ApiSettings
from jobstore.keys import QUEUE_NAME, TASK_NAME
from jobstore.records import ErrorCode, JobRecord
from jobstore.transitions import add_mark_failed

logger = logging.getLogger(__name__)


def create_celery_client(settings: ApiSettings) -> Celery:
    """A producer-only Celery app: JSON messages, a bounded publish retry, no result backend."""
    client = Celery("animegan-api", broker=settings.broker)
    client.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE_NAME,
        task_ignore_result=True,
        broker_connection_timeout=3,
        broker_connection_retry=False,
        broker_transport_options={"socket_connect_timeout": 3, "socket_timeout": 5},
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
    )
    return client


class TaskSender:
    """Publishes ``animegan.stylize(job_id)``; Celery's client is blocking, so it runs in the thread pool."""

    def __init__(self, celery: Celery, store: redis.asyncio.Redis) -> None:
        self.celery = celery
        self.store = store

    async def send(self, record: JobRecord) -> bool:
        """Send the job's message; False when it could not be sent (the job is failed then)."""
        try:
            await run_in_threadpool(self.celery.send_task, TASK_NAME, args=[record.id], queue=QUEUE_NAME)
        except Exception:
            logger.warning("could not send the task; failing the job", extra={"job_id": record.id}, exc_info=True)
            await self._fail_unsent(record)
            return False
        return True

    async def _fail_unsent(self, record: JobRecord) -> None:
        try:
            pipe = self.store.pipeline()
            add_mark_failed(pipe, record, ErrorCode.BROKER_UNAVAILABLE, "The job could not be queued.")
            await pipe.execute()
        except RedisError:
            logger.warning("could not mark the unsent job failed", extra={"job_id": record.id})

    def close(self) -> None:
        self.celery.close()
