"""The job body built from a record: what GET /jobs/{id} and the event stream show."""

from __future__ import annotations

from jobstore.job_view import Job
from jobstore.records import JobRecord, JobState


def _record(**changes: object) -> JobRecord:
    fields: dict[str, object] = {
        "id": "A" * 22,
        "state": JobState.SUCCEEDED,
        "style": "hayao",
        "format": "png",
        "digest": "d" * 64,
        "created_at": 1_700_000_000.0,
        "width": 128,
        "height": 85,
        "original_width": 451,
        "original_height": 300,
        "input_ttl_s": 60,
        "result_ttl_s": 60,
        "record_ttl_s": 60,
    }
    fields.update(changes)
    return JobRecord.model_validate(fields)


def test_timings_are_shown_to_the_millisecond() -> None:
    job = Job.from_record(_record(queue_s=1.2345678901, inference_s=0.00049))
    assert job.timings.queue_s == 1.235
    assert job.timings.inference_s == 0.0
    body = job.model_dump_json()
    assert '"queue_s":1.235' in body
    assert '"inference_s":0.0' in body


def test_timings_of_a_job_not_started_stay_null() -> None:
    job = Job.from_record(_record(state=JobState.QUEUED))
    assert job.timings.queue_s is None
    assert job.timings.inference_s is None
