"""The gateway's Celery producer: sends the task by name with only the job id (never the image)."""

from __future__ import annotations

from celery import Celery
from starlette.concurrency import run_in_threadpool

from api.config import ApiSettings
from jobstore.keys import QUEUE_NAME, TASK_NAME


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

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    async def send(self, job_id: str) -> None:
        await run_in_threadpool(self.celery.send_task, TASK_NAME, args=[job_id], queue=QUEUE_NAME)

    def close(self) -> None:
        self.celery.close()
