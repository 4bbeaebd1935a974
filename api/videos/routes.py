"""POST /videos: the route maps HTTP to ``api.videos.submit.submit_video`` and its outcome back to HTTP.

The video's job is then read, followed, deleted and downloaded through the job routes
(``api.jobs.routes``, ``api.events.job_stream``) like a photo's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api import metrics
from api.deps import SettingsDep
from api.problems import PROBLEM_RESPONSE, ApiError
from api.tenancy.clients import client_of
from api.videos.deps import VideoIntakeDep
from api.videos.form import StreamedForm
from api.videos.submit import submit_video
from jobstore.video_view import VideoJob

router = APIRouter(tags=["videos"])

# The form in the API document (FastAPI cannot describe a body the route parses itself).
VIDEO_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["video"],
                    "properties": {
                        "video": {
                            "type": "string",
                            "format": "binary",
                            "description": "MP4, MOV, WebM or MKV with H.264, H.265, VP9 or AV1 video.",
                        },
                        "style": {"type": "string", "description": "A name from GET /styles."},
                        "callback_url": {
                            "type": "string",
                            "format": "uri",
                            "maxLength": 2048,
                            "description": "Where the job's end is POSTed, signed (docs: Webhooks).",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/videos",
    status_code=202,
    response_model=VideoJob,
    openapi_extra=VIDEO_BODY,
    responses=dict.fromkeys((400, 408, 413, 415, 422, 429, 503), PROBLEM_RESPONSE),
)
async def create_video(request: Request, response: Response, settings: SettingsDep, intake: VideoIntakeDep) -> VideoJob:
    """Submit a clip; answers 202 with its job (segments, progress) and status URL."""
    client = client_of(request)
    declared = request.headers.get("content-length")
    try:
        form = StreamedForm(
            request.headers.get("content-type", ""), request.stream(), max_clip_bytes=settings.max_video_bytes
        )
        request_id = getattr(request.state, "request_id", None)
        described = await submit_video(
            form, client, request_id, int(declared) if declared and declared.isdigit() else None, intake
        )
    except ApiError as exc:
        metrics.observe_rejection(exc.slug, client=client.label)
        if exc.slug == "video-too-large":
            exc.headers["Connection"] = "close"  # the rest of the body is not read
        raise
    response.headers["Location"] = f"/jobs/{described.job.id}"
    if described.poll_hint_s is not None:
        response.headers["Retry-After"] = str(described.poll_hint_s)
    assert isinstance(described.job, VideoJob)
    return described.job
