"""The parts of the job use cases: built once per app (``build_job_parts``), declared by routes as
dependencies (``Annotated`` aliases). ``IntakeDep`` is what a submission uses (``api.jobs.submit.Intake``),
for a job and for a batch.
"""

from __future__ import annotations

from typing import Annotated

import redis.asyncio
from fastapi import Depends, Request
from starlette.datastructures import State

from api.config import ApiSettings
from api.deps import ObjectsDep, SettingsDep, StoreDep
from api.edge.images import ImageNormalizer
from api.jobs.admission import Admission
from api.jobs.dedup import Deduplicator
from api.jobs.reader import JobReader
from api.jobs.sender import TaskSender, create_celery_client
from api.jobs.store_budget import StoreBudget
from api.jobs.submit import Intake
from jobstore.objectstore import ObjectStore


def build_job_parts(
    state: State, settings: ApiSettings, store: redis.asyncio.Redis, objects: ObjectStore | None = None
) -> None:
    """One of each part on ``state`` (the app's), sharing the app's store client (and object store, if
    any); the app closes the sender."""
    reader = JobReader(store, objects, url_ttl_s=settings.s3_url_ttl_s)
    state.job_reader = reader
    state.admission = Admission(settings, store, reader, StoreBudget(settings, store))
    state.dedup = Deduplicator(store, reader)
    state.images = ImageNormalizer(settings)
    state.sender = TaskSender(create_celery_client(settings), store)


def get_job_reader(request: Request) -> JobReader:
    reader: JobReader = request.app.state.job_reader
    return reader


def get_admission(request: Request) -> Admission:
    admission: Admission = request.app.state.admission
    return admission


def get_dedup(request: Request) -> Deduplicator:
    dedup: Deduplicator = request.app.state.dedup
    return dedup


def get_images(request: Request) -> ImageNormalizer:
    images: ImageNormalizer = request.app.state.images
    return images


def get_sender(request: Request) -> TaskSender:
    sender: TaskSender = request.app.state.sender
    return sender


JobReaderDep = Annotated[JobReader, Depends(get_job_reader)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
DedupDep = Annotated[Deduplicator, Depends(get_dedup)]
ImagesDep = Annotated[ImageNormalizer, Depends(get_images)]
SenderDep = Annotated[TaskSender, Depends(get_sender)]


def get_intake(
    settings: SettingsDep,
    store: StoreDep,
    reader: JobReaderDep,
    dedup: DedupDep,
    admission: AdmissionDep,
    images: ImagesDep,
    sender: SenderDep,
    objects: ObjectsDep,
) -> Intake:
    """What a submission (of a job or of a batch) uses."""
    return Intake(settings, store, reader, dedup, admission, images, sender, objects)


IntakeDep = Annotated[Intake, Depends(get_intake)]
