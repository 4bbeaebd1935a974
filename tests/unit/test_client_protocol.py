"""animegan.client's I/O-free parts: Retry-After, the submit retry budget, event decoding, job parsing.

The client's behaviour against the service is proven in tests/integration/test_client.py.
"""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from animegan.client import ApiError, Job
from animegan.client.protocol import EventDecoder, RetryBudget, api_error, job_of_event, retry_after, stylize_form


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after({"retry-after": "7"}) == 7.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (retry_after({"retry-after": later}) or 0) <= 30
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def error(status: int, retry: float | None = None) -> ApiError:
    return ApiError(status, {"type": "/problems/x", "title": "X", "status": status, "detail": ""}, retry)


def test_the_retry_budget_honours_retry_after_and_backs_off_without_it() -> None:
    clock = FakeClock()
    budget = RetryBudget(10.0, clock=clock)
    assert budget.delay_before_retry(error(422)) is None  # only 429 and 503 are retried
    assert budget.delay_before_retry(error(503, 3.0)) == 3.0
    clock.now = 3.0
    assert budget.delay_before_retry(error(429)) == 2.0  # second attempt without a hint: 2 s
    clock.now = 5.0
    assert budget.delay_before_retry(error(503, 6.0)) is None  # would end past the 10 s budget


def test_events_are_decoded_line_by_line() -> None:
    decoder = EventDecoder()
    lines = [": keep-alive", "", "retry: 2000", "event: queued", 'data: {"id": "a",', 'data: "status": "queued"}', ""]
    events = [e for e in (decoder.feed(line) for line in lines) if e is not None]
    assert len(events) == 1
    assert events[0].event == "queued"
    job = job_of_event(events[0])
    assert job is not None
    assert (job.id, job.status, job.done) == ("a", "queued", False)


def test_an_expired_event_raises_its_problem() -> None:
    decoder = EventDecoder()
    decoder.feed("event: expired")
    decoder.feed('data: {"type": "/problems/job-not-found", "title": "Job not found", "status": 404, "detail": "gone"}')
    event = decoder.feed("")
    assert event is not None
    with pytest.raises(ApiError) as expired:
        job_of_event(event)
    assert (expired.value.status, expired.value.slug) == (404, "job-not-found")


def test_a_body_that_is_not_a_problem_is_described_anyway() -> None:
    response = httpx.Response(502, text="<html>Bad gateway</html>", headers={"Retry-After": "3"})
    failure = api_error(response)
    assert (failure.status, failure.problem["type"], failure.retry_after) == (502, "about:blank", 3.0)
    assert failure.problem["title"] == "Bad Gateway"


def test_a_job_is_parsed_with_its_parts_and_keeps_unknown_fields() -> None:
    body = {
        "id": "j1",
        "status": "failed",
        "style": "hayao",
        "queue_position": None,
        "output": {"format": "png", "width": None},
        "error": {"type": "/problems/invalid-image", "title": "Invalid image", "detail": "truncated"},
        "links": {"status": "/jobs/j1", "result": "/jobs/j1/result"},
        "batch": "b7",
    }
    job = Job.from_json(body)
    assert (job.done, job.succeeded) == (True, False)
    assert job.error is not None
    assert job.error.detail == "truncated"
    assert job.result_url == "/jobs/j1/result"
    assert job.raw["batch"] == "b7"
    with pytest.raises(ValueError, match="not a job"):
        Job.from_json({"status": "queued"})


def test_the_form_carries_only_the_fields_given() -> None:
    files, data = stylize_form(b"\xff\xd8\xff", mode="portrait", crop=(1, 2, 30, 30))
    assert files["image"][1] == b"\xff\xd8\xff"
    assert data == {"mode": "portrait", "crop": "1,2,30,30"}
