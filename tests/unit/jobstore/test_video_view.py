"""jobstore.video_view: a video's body (kind, progress, segments); a photo's keeps its fields, plus kind."""

from __future__ import annotations

from pydantic import TypeAdapter

from jobstore.job_view import Job
from jobstore.records import JobKind, JobRecord, JobState, now
from jobstore.video_view import AnyJob, VideoJob, job_body
from jobstore.videos import Part

BASE = {
    "id": "V" * 22,
    "state": "running",
    "style": "hayao",
    "format": "mp4",
    "digest": "d",
    "created_at": now(),
    "width": 640,
    "height": 360,
    "original_width": 1280,
    "original_height": 720,
    "input_ttl_s": 60,
    "result_ttl_s": 60,
    "record_ttl_s": 60,
}


def test_a_videos_body_shows_progress_and_each_segment_with_its_worker() -> None:
    record = JobRecord.model_validate(
        {**BASE, "kind": "video", "frames_total": 150, "frames_done": 60, "segments": 2, "segments_done": 1}
    )
    parts = [
        Part("V" * 22 + "-s0", JobState.SUCCEEDED, "host:11", 0, 0, 60),
        Part("V" * 22 + "-s1", JobState.RUNNING, "host:12", 1, 60, 90),
        Part("V" * 22 + "-join", None, None, None, None, None),
    ]
    body = job_body(record, parts)
    assert isinstance(body, VideoJob)
    dumped = body.model_dump(mode="json")
    assert dumped["kind"] == "video"
    assert dumped["progress"] == {"frames_done": 60, "frames_total": 150}
    assert dumped["segments"] == [
        {"index": 0, "first_frame": 0, "frames": 60, "status": "succeeded", "worker": "host:11"},
        {"index": 1, "first_frame": 60, "frames": 90, "status": "running", "worker": "host:12"},
    ]
    assert dumped["output"]["format"] == "mp4"
    assert TypeAdapter(AnyJob).validate_python(dumped) == body


def test_a_photos_body_has_its_fields_and_kind_photo_only() -> None:
    record = JobRecord.model_validate({**BASE, "format": "png"})
    body = job_body(record)
    assert isinstance(body, Job)
    dumped = body.model_dump(mode="json")
    assert dumped["kind"] == "photo"
    assert "progress" not in dumped
    assert "segments" not in dumped
    assert TypeAdapter(AnyJob).validate_python(dumped) == body


def test_only_photos_answer_identical_requests() -> None:
    photo = JobRecord.model_validate({**BASE, "upload_digest": "u"})
    assert photo.dedup_digests == ["d", "u"]
    video = photo.model_copy(update={"kind": JobKind.VIDEO})
    assert video.dedup_digests == []
