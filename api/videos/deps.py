"""The parts of the video use case: built once per app (``build_video_parts``), declared by the route."""

from __future__ import annotations

from typing import Annotated

import redis.asyncio
from fastapi import Depends, Request
from starlette.datastructures import State

from api.config import ApiSettings
from api.deps import SettingsDep, StoreDep
from api.jobs.deps import AdmissionDep, JobReaderDep, SenderDep
from api.videos.clip_store import ClipStore
from api.videos.submit import VideoIntake


def build_video_parts(state: State, settings: ApiSettings, store: redis.asyncio.Redis) -> None:
    """The clip store on ``state`` (the app's), on the app's Redis client and bucket (``state.objects``)."""
    state.clips = ClipStore(store, state.objects, ttl_s=settings.input_ttl_s, probes=settings.decode_concurrency)


def get_clips(request: Request) -> ClipStore:
    clips: ClipStore = request.app.state.clips
    return clips


ClipsDep = Annotated[ClipStore, Depends(get_clips)]


def get_video_intake(
    settings: SettingsDep,
    store: StoreDep,
    reader: JobReaderDep,
    admission: AdmissionDep,
    sender: SenderDep,
    clips: ClipsDep,
) -> VideoIntake:
    """What a clip's submission uses."""
    return VideoIntake(settings, store, reader, admission, sender, clips)


VideoIntakeDep = Annotated[VideoIntake, Depends(get_video_intake)]
