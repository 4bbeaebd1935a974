"""The parts of the job use cases as dependencies (``Annotated`` aliases), one of each per app (``api.main``).

``IntakeDep`` is what a submission uses (``api.jobs.submit.Intake``), for a job and for a batch.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.deps import SettingsDep, StoreDep
from api.edge.images import ImageNormalizer
from api.jobs.admission import Admission
from api.jobs.dedup import Deduplicator
from api.jobs.reader import JobReader
from api.jobs.sender import TaskSender
from api.jobs.submit import Intake


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
) -> Intake:
    """What a submission (of a job or of a batch) uses."""
    return Intake(settings, store, reader, dedup, admission, images, sender)


IntakeDep = Annotated[Intake, Depends(get_intake)]
