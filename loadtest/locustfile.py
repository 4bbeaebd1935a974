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
``FloodTenantUser``       tenants    tenant "flood" (its own API key): back to back, more users than its quota
``SteadyTenantUser``      tenants    tenant "steady" (another key): one user, one job at a time, as the web page
========================  =========  ==================================================================

Every request is named by route (``/jobs/[id]``), never by job id. Each finished job is also reported as a
``JOB`` request (end-to-end latency, submit to result bytes). Clients honour ``Retry-After``: a submission
refused with 503 (shedding) or 429 (``client-quota``, ``rate-limited``) waits as long as it says and is sent
again, counted in ``jobs.csv`` (``shed_503``, ``shed_429``).

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
- ``ANIMEGAN_LOADTEST_KEY``: an API key every user sends (``Authorization: Bearer``) for a service with a keys
  file; ``ANIMEGAN_LOADTEST_KEY_FLOOD`` and ``ANIMEGAN_LOADTEST_KEY_STEADY``: the two tenants' keys (the runner
  generates them for its embedded stack). Keys go only into request headers, never into a file.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, ClassVar

from locust import HttpUser, LoadTestShape, between, constant, constant_pacing, events, tag, task
from locust.env import Environment

from loadtest.answers import answer, is_deduplicated, problem_slug, problem_type, retry_after, server_seconds
from loadtest.images import BAD_CASES, DEFAULT_UPLOAD_LIMIT, Photos, bad_upload
from loadtest.records import Records

JOB_TIMEOUT_S = float(os.environ.get("ANIMEGAN_LOADTEST_JOB_TIMEOUT_S", "600"))
STYLE = os.environ.get("ANIMEGAN_LOADTEST_STYLE", "")
FORMAT = os.environ.get("ANIMEGAN_LOADTEST_FORMAT", "")
PACE_S = float(os.environ.get("ANIMEGAN_LOADTEST_PACE_S") or 0)
UPLOAD_LIMIT = int(os.environ.get("ANIMEGAN_MAX_UPLOAD_BYTES", str(DEFAULT_UPLOAD_LIMIT)))
POLL_S = 0.5
IDLE_CLOSE_S = 2.0
PHOTOS = Photos(os.environ.get("ANIMEGAN_LOADTEST_PHOTOS") or None, upload_limit=UPLOAD_LIMIT)


# --------------------------------------------------------------------------------------------- records
RECORDS = Records()


def _open_records(environment: Environment, **_: Any) -> None:
    if folder := os.environ.get("ANIMEGAN_LOADTEST_OUT", ""):
        RECORDS.open(folder)


def _close_records(environment: Environment, **_: Any) -> None:
    RECORDS.close()


def _record_request(request_type: str, name: str, response_time: float, response_length: int, **kw: Any) -> None:
    response, exception = kw.get("response"), kw.get("exception")
    status = getattr(response, "status_code", 0) or 0
    RECORDS.write(
        "requests",
        {
            "t": round(kw.get("start_time") or time.time(), 3),
            "method": request_type,
            "name": name,
            "status": status,
            "response_ms": round(response_time, 1),
            "bytes": response_length,
            "ok": 0 if exception else 1,
            "retry_after": (getattr(response, "headers", None) or {}).get("Retry-After", ""),
            "problem": problem_slug(response) if status >= 400 else "",
            "tenant": (kw.get("context") or {}).get("tenant", ""),
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
class JobFailed(Exception):
    """A job that did not end with its result bytes."""


class JobUser(HttpUser):
    """Submits a photo, polls its job to the end, downloads the result; one job per task."""

    abstract = True
    scenario: ClassVar[str] = ""
    tenant: ClassVar[str] = ""
    key_env: ClassVar[str] = "ANIMEGAN_LOADTEST_KEY"  # the variable holding this user's API key, if any
    sizes: ClassVar[tuple[tuple[int, int], ...]] = ((1080, 1920),)
    wait_time = constant(0)

    def on_start(self) -> None:
        self.rng = random.Random()
        if key := os.environ.get(self.key_env, ""):
            self.client.headers["Authorization"] = f"Bearer {key}"

    def context(self) -> dict[str, Any]:
        """Merged into every request event: ``requests.csv`` tells the tenants apart by it."""
        return {"tenant": self.tenant} if self.tenant else {}

    def run_job(self, width: int, height: int, data: bytes | None = None) -> None:
        data = data if data is not None else PHOTOS.unique_jpeg(self.rng, width, height)
        started = time.time()
        deadline = started + JOB_TIMEOUT_S
        row: dict[str, Any] = {"scenario": self.scenario, "tenant": self.tenant, "width": width, "height": height}
        row["upload_bytes"] = len(data)
        row["users"] = self.environment.runner.target_user_count if self.environment.runner else 0
        result = b""
        error: Exception | None = None
        try:
            job, wait = self.submit(data, deadline, row)
            row["waited_s"] = round(time.time() - started, 3)  # refused (503/429) and retried before acceptance
            job = self.wait_for_job(job, wait, deadline)
            result = self.fetch_result(job, deadline)
            row.update(outcome="succeeded", server_latency_s=server_seconds(job, "created_at", "finished_at"))
            row["service_s"] = server_seconds(job, "started_at", "finished_at")
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
        """POST /stylize until accepted (the job and its poll hint); on 503 or 429 wait Retry-After, retry."""
        fields = {key: value for key, value in (("style", STYLE), ("format", FORMAT)) if value}
        row["shed_503"] = row["shed_429"] = 0
        while True:
            files = {"image": ("photo.jpg", data, "image/jpeg")}
            with self.client.post("/stylize", files=files, data=fields, name="/stylize", catch_response=True) as r:
                if r.status_code == 503 and not problem_type(r).endswith("broker-unavailable"):
                    r.success()  # shedding load is the service working as designed
                    row["shed_503"] += 1
                    wait = retry_after(r, 1.0)
                elif r.status_code == 429:
                    r.success()  # a per-client limit (quota, rate): the same manners as shedding
                    row["shed_429"] += 1
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
                if r.status_code == 429:  # over ANIMEGAN_RATE_LIMIT: ask again when it says
                    r.success()
                    wait = retry_after(r, 1.0)
                    continue
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
                if r.status_code not in (202, 409, 429):
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


class TenantUser(JobUser):
    """One of two clients with API keys of their own (``animegan loadtest tenants``), telling them apart."""

    abstract = True
    scenario = "tenants"
    sizes = ((640, 480),)


class FloodTenantUser(TenantUser):
    """Tenant "flood": more users than its quota, back to back, so it always holds as many jobs as it may.

    Users beyond ``ANIMEGAN_MAX_QUEUED_PER_CLIENT`` are refused with 429 ``client-quota``; they wait its
    Retry-After and submit again, so the tenant's quota stays full for the whole run.
    """

    tenant = "flood"
    key_env = "ANIMEGAN_LOADTEST_KEY_FLOOD"

    @tag("tenants")
    @task
    def flood(self) -> None:
        self.run_job(*self.sizes[0])


class SteadyTenantUser(TenantUser):
    """Tenant "steady": one person on the web page, one job at a time, the next once the result is in."""

    tenant = "steady"
    key_env = "ANIMEGAN_LOADTEST_KEY_STEADY"
    fixed_count = 1

    @tag("tenants")
    @task
    def steady(self) -> None:
        self.run_job(*self.sizes[0])


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
        while True:  # a full queue or a client limit may refuse it before its content is judged: wait, resend
            name = f"/stylize [{case}]"
            with self.client.post("/stylize", files=files, data=fields, name=name, catch_response=True) as r:
                if r.status_code == 429 or (
                    r.status_code == 503 and not problem_type(r).endswith("broker-unavailable")
                ):
                    r.success()
                    wait = retry_after(r, 1.0)
                elif 400 <= r.status_code < 500:
                    r.success()
                    return
                else:
                    r.failure(f"bad input answered {answer(r)}, a 4xx was expected")
                    return
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
