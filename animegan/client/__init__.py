"""A Python client of the animegan service: ``Client`` (blocking) and ``AsyncClient``, over httpx.

Needs only httpx: importing it loads no model runtime, no Celery, no Redis and no web framework,
so it fits in any application. ::

    from animegan.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        png = client.stylize("photo.jpg", style="hayao", format="png")

Every error is a ``ClientError``: ``ApiError`` (``.status``, ``.problem``, ``.retry_after``) when
the service refuses, ``ServiceUnreachableError``, ``JobFailedError``, ``JobTimeoutError``.
"""

from animegan.client.async_client import AsyncClient
from animegan.client.errors import ApiError, ClientError, JobFailedError, JobTimeoutError, ServiceUnreachableError
from animegan.client.models import Job, JobError, JobOutput
from animegan.client.sync_client import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientError",
    "Job",
    "JobError",
    "JobFailedError",
    "JobOutput",
    "JobTimeoutError",
    "ServiceUnreachableError",
]
