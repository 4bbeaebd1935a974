"""Dependencies of the routes, as ``Annotated`` aliases (everything lives on ``app.state``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.config import ApiSettings
from api.queue import JobQueue


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_job_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.job_queue
    return queue


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
JobQueueDep = Annotated[JobQueue, Depends(get_job_queue)]
