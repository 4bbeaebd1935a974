"""Locust scenarios for the AnimeGAN service. Talks HTTP only: no api, worker or inference import.

Pick a scenario by user class (``locust -f loadtest/locustfile.py ClassicUser``) or by tag (``-T classic``):

========================  =========  ==================================================================
user class                tag        what it does
========================  =========  ==================================================================
``ClassicUser``           classic    1080x1920 portrait photos, submit then poll to the result
``MixedSizesUser``        mixed      sizes from 32x32 to 4000x3000, submit then poll
``OverloadUser``          overload   many users at once; 503 + Retry-After is shedding, counted as a pass
``DuplicateUser``         dedup      the same two photos over and over: the service answers from cache
``BadInputUser``          badinput   truncated, wrong type, oversize, pixel bomb, bad fields: 4xx is a pass
``SoakUser``              soak       a mixed corpus (thumbnail to 12 MP) at a set pace, for a long bounded run
========================  =========  ==================================================================

Every request is named by route (``/jobs/[id]``), never by job id. Each finished job is also reported as a
``JOB`` request (end-to-end latency, submit to result bytes). Clients honour ``Retry-After``.

Environment (all optional):

- ``ANIMEGAN_LOADTEST_PHOTOS``: folder of JPEG/PNG/WebP photos, resized in memory to each scenario's sizes.
  Unset or empty: photo-like images are generated in memory (``loadtest.images``: Pillow only).
- ``ANIMEGAN_LOADTEST_OUT``: folder where ``requests.csv`` (one row per request) and ``jobs.csv`` (one row per
  job) are written; ``animegan loadtest`` sets it.
- ``ANIMEGAN_LOADTEST_STEPS`` (``1,2,4,8``) and ``ANIMEGAN_LOADTEST_STEP_S``: step mode, each user count
  held for STEP_S seconds, then the run stops.
- ``ANIMEGAN_LOADTEST_STYLE``, ``ANIMEGAN_LOADTEST_FORMAT``: form fields sent with each job (default: the
  service's defaults). ``ANIMEGAN_LOADTEST_JOB_TIMEOUT_S``: give up on a job after this long (default 600).
- ``ANIMEGAN_LOADTEST_PACE_S``: soak only, each user starts a job at most every PACE_S seconds (locust's
  ``constant_pacing``); users x pace sets the arrival rate. Unset: back to back (the capacity probe).
- ``ANIMEGAN_MAX_UPLOAD_BYTES``: the service's upload limit, read so the oversize case exceeds it.
"""

from __future__ import annotations

import csv
import io
import os
import random
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar

from locust import HttpUser, LoadTestShape, between, constant, constant_pacing, events, tag, task
from locust.env import Environment

from loadtest.images import BAD_CASES, DEFAULT_UPLOAD_LIMIT, Photos, bad_upload

JOB_TIMEOUT_S = float(os.environ.get("ANIMEGAN_LOADTEST_JOB_TIMEOUT_S", "600"))
STYLE = os.environ.get("ANIMEGAN_LOADTEST_STYLE", "")
FORMAT = os.environ.get("ANIMEGAN_LOADTEST_FORMAT", "")
PACE_S = float(os.environ.get("ANIMEGAN_LOADTEST_PACE_S") or 0)
UPLOAD_LIMIT = int(os.environ.get("ANIMEGAN_MAX_UPLOAD_BYTES", str(DEFAULT_UPLOAD_LIMIT)))
POLL_S = 0.5
IDLE_CLOSE_S = 2.0
PHOTOS = Photos(os.environ.get("ANIMEGAN_LOADTEST_PHOTOS") or None, upload_limit=UPLOAD_LIMIT)


# --------------------------------------------------------------------------------------------- records
class Records:
    """``requests.csv`` and ``jobs.csv`` in ``ANIMEGAN_LOADTEST_OUT`` (nothing when unset)."""

    REQUEST_FIELDS = ("t", "method", "name", "status", "response_ms", "bytes", "ok", "retry_after", "error")
    JOB_FIELDS = (
        "submitted_at", "finished_at", "latency_s", "server_latency_s", "queue_s", "inference_s", "outcome",
        "detail", "scenario", "users", "width", "height", "upload_bytes", "result_bytes", "deduplicated",
        "shed_503", "job_id",
    )  # fmt: skip

    def __init__(self) -> None:
        self._writers: dict[str, Any] = {}
        self._files: list[io.TextIOWrapper] = []

    def open(self, folder: str) -> None:
        for kind, fields in (("requests", self.REQUEST_FIELDS), ("jobs", self.JOB_FIELDS)):
            handle = open(Path(folder) / f"{kind}.csv", "w", newline="", buffering=1)  # noqa: SIM115
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            self._writers[kind] = writer
            self._files.append(handle)

    def write(self, kind: str, row: dict[str, Any]) -> None:
        if kind in self._writers:
            self._writers[kind].writerow(row)

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        self._files.clear()
        self._writers.clear()


RECORDS = Records()


def _open_records(environment: Environment, **_: Any) -> None:
    if folder := os.environ.get("ANIMEGAN_LOADTEST_OUT", ""):
        RECORDS.open(folder)


def _close_records(environment: Environment, **_: Any) -> None:
    RECORDS.close()


def _record_request(request_type: str, name: str, response_time: float, response_length: int, **kw: Any) -> None:
    response, exception = kw.get("response"), kw.get("exception")
    RECORDS.write(
        "requests",
        {
            "t": round(kw.get("start_time") or time.time(), 3),
            "method": request_type,
            "name": name,
            "status": getattr(response, "status_code", 0) or 0,
            "response_ms": round(response_time, 1),
            "bytes": response_length,
            "ok": 0 if exception else 1,
            "retry_after": (getattr(response, "headers", None) or {}).get("Retry-After", ""),
            "error": str(exception)[:200] if exception else "",
        },
    )


def _drop_users_without_tasks(environment: Environment, **_: Any) -> None:
    # `-T TAG` keeps only the tagged tasks but keeps every user class; one left without tasks would fail.
    kept = [user for user in environment.user_classes if user.tasks]
    if kept:
        environment.user_classes[:] = kept


# locust's EventHook.add_listener carries no annotations.
events.init.add_listener(_open_records)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_close_records)  # type: ignore[no-untyped-call]
events.request.add_listener(_record_request)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_drop_users_without_tasks)  # type: ignore[no-untyped-call]


# ----------------------------------------------------------------------------------------------- users
def retry_after(response: Any, default: float) -> float:
    """Seconds the server asked us to wait (delta-seconds or HTTP-date), else ``default``."""
    value = (getattr(response, "headers", None) or {}).get("Retry-After")
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())


def server_seconds(job: dict[str, Any], start: str, end: str) -> float | None:
    """``end - start`` from two timestamps of the job record (epoch seconds or ISO 8601), if both are there."""
    stamps = []
    for key in (start, end):
        value = job.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            stamps.append(float(value))
            continue
        try:
            stamps.append(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None
    return round(stamps[1] - stamps[0], 3)


def answer(response: Any) -> str:
    """The status code, or what went wrong when there was no HTTP answer (status 0)."""
    if response.status_code:
        return str(response.status_code)
    return f"no response ({getattr(response, 'error', None)!r})"[:160]


def problem_type(response: Any) -> str:
    """The ``type`` of a problem+json body, or ``""``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("type", "")) if isinstance(body, dict) else ""


def is_deduplicated(response: Any, body: dict[str, Any]) -> bool:
    """Did the service answer this submission from its cache? (body flag or header)"""
    if body.get("deduplicated") is True or body.get("cached") is True:
        return True
    header = (response.headers.get("X-Deduplicated") or response.headers.get("X-Cache") or "").lower()
    return header in {"1", "true", "yes", "hit"}


class JobFailed(Exception):
    """A job that did not end with its result bytes."""


class JobUser(HttpUser):
    """Submits a photo, polls its job to the end, downloads the result; one job per task."""

    abstract = True
    scenario: ClassVar[str] = ""
    sizes: ClassVar[tuple[tuple[int, int], ...]] = ((1080, 1920),)
    wait_time = constant(0)

    def on_start(self) -> None:
        self.rng = random.Random()

    def run_job(self, width: int, height: int, data: bytes | None = None) -> None:
        data = data if data is not None else PHOTOS.unique_jpeg(self.rng, width, height)
        started = time.time()
        deadline = started + JOB_TIMEOUT_S
        row: dict[str, Any] = {"scenario": self.scenario, "width": width, "height": height, "upload_bytes": len(data)}
        row["users"] = self.environment.runner.target_user_count if self.environment.runner else 0
        result = b""
        error: Exception | None = None
        try:
            job, wait = self.submit(data, deadline, row)
            job = self.wait_for_job(job, wait, deadline)
            result = self.fetch_result(job, deadline)
            row.update(outcome="succeeded", server_latency_s=server_seconds(job, "created_at", "finished_at"))
            timings = job.get("timings") or {}
            row.update(queue_s=timings.get("queue_s"), inference_s=timings.get("inference_s"))
        except JobFailed as failed:
            error = failed
            row.update(outcome=str(failed).split(":", 1)[0], detail=str(failed)[:200])
        latency = time.time() - started
        row.update(submitted_at=round(started, 3), finished_at=round(started + latency, 3))
        row.update(latency_s=round(latency, 3), result_bytes=len(result))
        RECORDS.write("jobs", row)
        self.environment.events.request.fire(
            request_type="JOB",
            name=f"job {width}x{height}",
            response_time=latency * 1000,
            response_length=len(result),
            exception=error,
            context={},
            start_time=started,
        )

    def pause(self, seconds: float, deadline: float, why: str) -> None:
        if time.time() + seconds > deadline:
            raise JobFailed(f"timeout: {why}")
        self.idle(seconds)

    def idle(self, seconds: float) -> None:
        """Sleep; before a long sleep, drop idle connections, as a client whose connection timed out would.

        Otherwise the next request can race the server's keep-alive timeout (uvicorn's is 5 s, about a poll
        hint) and meet a connection closed under it: a client-side artefact, not the service failing.
        """
        if seconds >= IDLE_CLOSE_S:
            self.client.close()
        time.sleep(seconds)

    def submit(self, data: bytes, deadline: float, row: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """POST /stylize until accepted (the job and its poll hint); on 503 (shedding) wait Retry-After, retry."""
        fields = {key: value for key, value in (("style", STYLE), ("format", FORMAT)) if value}
        row["shed_503"] = 0
        while True:
            files = {"image": ("photo.jpg", data, "image/jpeg")}
            with self.client.post("/stylize", files=files, data=fields, name="/stylize", catch_response=True) as r:
                if r.status_code == 503 and not problem_type(r).endswith("broker-unavailable"):
                    r.success()  # shedding load is the service working as designed
                    row["shed_503"] += 1
                    wait = retry_after(r, 1.0)
                elif r.status_code in (200, 201, 202):
                    body = r.json()
                    row.update(job_id=body.get("id", ""), deduplicated=int(is_deduplicated(r, body)))
                    return dict(body), retry_after(r, 0.0)
                else:
                    r.failure(f"unexpected {answer(r)}")
                    raise JobFailed(f"error: POST /stylize answered {answer(r)}")
            self.pause(wait, deadline, "still shed by 503")

    def wait_for_job(self, job: dict[str, Any], wait: float, deadline: float) -> dict[str, Any]:
        while job.get("status") not in ("succeeded", "failed"):
            self.pause(wait, deadline, f"job still {job.get('status')}")
            with self.client.get(f"/jobs/{job['id']}", name="/jobs/[id]", catch_response=True) as r:
                if r.status_code != 200:
                    r.failure(f"unexpected {answer(r)}")
                    raise JobFailed(f"error: GET /jobs/[id] answered {answer(r)}")
                job = {**job, **r.json()}
                wait = retry_after(r, POLL_S)
        if job["status"] == "failed":
            raise JobFailed(f"failed: {(job.get('error') or {}).get('title', 'job failed')}")
        return job

    def fetch_result(self, job: dict[str, Any], deadline: float) -> bytes:
        while True:
            with self.client.get(f"/jobs/{job['id']}/result", name="/jobs/[id]/result", catch_response=True) as r:
                if r.status_code == 200 and r.headers.get("Content-Type", "").startswith("image/") and r.content:
                    return bytes(r.content)
                if r.status_code not in (202, 409):
                    r.failure(f"unexpected {answer(r)} {r.headers.get('Content-Type', '')}")
                    raise JobFailed(f"error: GET /jobs/[id]/result answered {answer(r)}")
                r.success()
                wait = retry_after(r, POLL_S)
            self.pause(wait, deadline, "result not ready")


class ClassicUser(JobUser):
    """10 users, 1080p portrait photos (1080x1920), each polled to its result."""

    scenario = "classic"

    @tag("classic")
    @task
    def portrait(self) -> None:
        self.run_job(*self.sizes[0])


class MixedSizesUser(JobUser):
    """Sizes from a thumbnail to a 12 MP camera photo; the service downscales the big ones."""

    scenario = "mixed"
    sizes = ((32, 32), (320, 240), (640, 480), (1080, 1920), (1920, 1080), (4000, 3000))

    @tag("mixed")
    @task
    def any_size(self) -> None:
        self.run_job(*self.rng.choice(self.sizes))


class OverloadUser(JobUser):
    """Start many of these at once: past its queue limit the service must answer 503 + Retry-After."""

    scenario = "overload"
    sizes = ((640, 480),)

    @tag("overload")
    @task
    def burst(self) -> None:
        self.run_job(*self.sizes[0])


class DuplicateUser(JobUser):
    """The same two photos again and again: after the first, answers come from the result cache."""

    scenario = "dedup"
    sizes = ((512, 384), (384, 512))
    wait_time = between(0.5, 1.5)

    @tag("dedup")
    @task
    def duplicate(self) -> None:
        index = self.rng.randrange(len(self.sizes))
        width, height = self.sizes[index]
        self.run_job(width, height, PHOTOS.jpeg(index, width, height))


class SoakUser(JobUser):
    """A mixed corpus at a fixed pace, for a long (but bounded) run: watch memory and Redis for creep.

    Sizes run from a thumbnail to a 12 MP photo (the service downscales to its max side), weighted towards
    everyday phone-sized uploads. With ``ANIMEGAN_LOADTEST_PACE_S`` each user starts a job every PACE_S
    seconds (open-loop enough while a job takes less than that); without it, back to back.
    """

    scenario = "soak"
    sizes = ((64, 64), (320, 240), (640, 480), (800, 600), (1024, 768), (1080, 1920), (1920, 1080), (4000, 3000))
    weights = (1, 2, 3, 3, 3, 2, 2, 1)
    wait_time = constant_pacing(PACE_S) if PACE_S > 0 else constant(0)

    @tag("soak")
    @task
    def steady(self) -> None:
        self.run_job(*self.rng.choices(self.sizes, weights=self.weights)[0])


class BadInputUser(JobUser):
    """Bad uploads mixed with good ones: each bad case must get a 4xx (a 2xx or 5xx fails); good jobs still finish."""

    scenario = "badinput"
    sizes = ((320, 240),)
    wait_time = between(0.2, 0.5)

    @tag("badinput")
    @task(3)
    def bad(self) -> None:
        case = self.rng.choice(BAD_CASES)
        fields = {key: value for key, value in (("style", STYLE), ("format", FORMAT)) if value}
        image, fields = bad_upload(
            case, PHOTOS.unique_jpeg(self.rng, *self.sizes[0]), fields, upload_limit=UPLOAD_LIMIT
        )
        files = {"image": image} if image else None
        deadline = time.time() + JOB_TIMEOUT_S
        while True:  # a full queue may shed the request before its content is judged: wait, send it again
            name = f"/stylize [{case}]"
            with self.client.post("/stylize", files=files, data=fields, name=name, catch_response=True) as r:
                if 400 <= r.status_code < 500:
                    r.success()
                    return
                if r.status_code != 503 or problem_type(r).endswith("broker-unavailable"):
                    r.failure(f"bad input answered {answer(r)}, a 4xx was expected")
                    return
                r.success()
                wait = retry_after(r, 1.0)
            if time.time() + wait > deadline:
                return
            self.idle(wait)

    @tag("badinput")
    @task(1)
    def good(self) -> None:
        self.run_job(*self.sizes[0])


# ----------------------------------------------------------------------------------------- step shape
def parse_steps(text: str) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]``."""
    return [int(part) for part in text.split(",") if part.strip()]


if os.environ.get("ANIMEGAN_LOADTEST_STEPS"):

    class StepShape(LoadTestShape):
        """Hold each user count of ``ANIMEGAN_LOADTEST_STEPS`` for ``ANIMEGAN_LOADTEST_STEP_S`` seconds, then stop."""

        steps = parse_steps(os.environ["ANIMEGAN_LOADTEST_STEPS"])
        step_s = float(os.environ.get("ANIMEGAN_LOADTEST_STEP_S", "60"))

        def tick(self) -> tuple[int, float] | None:
            index = int((time.perf_counter() - self.start_time) // self.step_s)
            if index >= len(self.steps):
                return None
            return self.steps[index], float(self.steps[index])
