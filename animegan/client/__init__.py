"""A Python client of the animegan service: ``Client`` (blocking) and ``AsyncClient``, over httpx.

Needs only httpx: importing it loads no model runtime, no Celery, no Redis and no web framework,
so it fits in any application. ::

    from animegan.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        png = client.stylize("photo.jpg", style="hayao", format="png")
        mp4 = client.video("clip.mp4", style="hayao")  # the clip's frames, timing and sound kept
        batch = client.wait_batch(client.batch(["a.jpg", "b.jpg"]), timeout=300)
        archive = client.batch_results(batch)  # a zip named after the uploads

Every error is a ``ClientError``: ``ApiError`` (``.status``, ``.problem``, ``.retry_after``) when
the service refuses, ``ServiceUnreachableError``, ``JobFailedError``, ``JobTimeoutError``, ``BatchTimeoutError``.
"""

from animegan.client.async_client import AsyncClient
from animegan.client.errors import (
    ApiError,
    BatchTimeoutError,
    ClientError,
    JobFailedError,
    JobTimeoutError,
    ServiceUnreachableError,
)
from animegan.client.models import Batch, BatchItem, Job, JobError, JobOutput, VideoProgress, VideoSegment
from animegan.client.sync_client import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "Batch",
    "BatchItem",
    "BatchTimeoutError",
    "Client",
    "ClientError",
    "Job",
    "JobError",
    "JobFailedError",
    "JobOutput",
    "JobTimeoutError",
    "ServiceUnreachableError",
    "VideoProgress",
    "VideoSegment",
]
