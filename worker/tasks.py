"""The one task, ``animegan.stylize``: read the input from Redis, stylize, write the result back.

Delivery is at-least-once (acks late, requeue when a pool child dies); these guards make it
exactly-once as far as a client can tell:

- A delivery claims the job atomically (WATCH/MULTI on its record): only a ``queued`` job is run.
  A second delivery of a job that is ``running`` within its deadline (the broker handed the
  message out again, e.g. after its visibility timeout) is acknowledged without running it.
- A pool child killed mid-job (SIGKILL, OOM) is noticed by the main worker process, which puts
  the job back to ``queued`` (``StylizeRequest``) while Celery requeues the message. The
  ``attempts`` counter turns a job that keeps killing workers into ``failed`` instead of a loop.
- The result is written with SET NX, so a redelivered job never writes twice.
- Every path ends the job in a terminal state with a safe message. Where the worker cannot record
  it (the whole worker killed, Redis unreachable at the end), the record's ``deadline_at`` lets
  the gateway, or a later delivery, end it as ``worker-lost`` once the hard time limit has passed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.worker.request import Request
from PIL import Image

from inference import errors as inference_errors
from inference.imageio import encode_image
from jobstore.clock import now
from jobstore.deadlines import STALE_DETAIL, is_stale, running_deadline
from jobstore.errors import ErrorCode
from jobstore.keys import SERVICE_TIME_KEY, TASK_NAME, input_key, job_key, result_key
from jobstore.records import JobRecord
from jobstore.service_time import next_service_time
from jobstore.states import JobState
from jobstore.transitions import add_mark_failed, add_mark_running, add_mark_succeeded, add_requeue
from telemetry.logs import job_id_var
from worker import metrics
from worker.runtime import Runtime, get_runtime

logger = logging.getLogger(__name__)


class StylizeRequest(Request):  # type: ignore[misc]
    """The main worker process's view of one delivery: notices a pool child that died mid-job."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> None:
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # unwrap billiard's ExceptionWithTraceback
        if isinstance(exc, WorkerLostError) and self.args:
            # Celery requeues the message (reject_on_worker_lost); the job shows as waiting again.
            requeue_job_id(get_runtime(), str(self.args[0]))
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


class StylizeTask(Task):  # type: ignore[misc]
    Request = StylizeRequest

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # Called in the main worker process when the hard time limit kills a child: the message
        # is acknowledged and never comes back, so this is the last chance to end the job.
        if isinstance(exc, TimeLimitExceeded) and args:
            runtime = get_runtime()
            limit = runtime.settings.task_time_limit_s
            style = fail_job_id(
                runtime, str(args[0]), ErrorCode.INFERENCE_TIMEOUT, f"Inference was stopped after {limit} s."
            )
            if style is not None:
                metrics.observe_task(style, "timeout")


@shared_task(name=TASK_NAME, bind=True, base=StylizeTask, ignore_result=True)  # type: ignore[untyped-decorator]
def stylize(self: Task, job_id: str) -> str:
    """Run one job; returns the outcome (succeeded, failed or skipped) for the worker log."""
    token = job_id_var.set(job_id)
    try:
        return run_job(get_runtime(), job_id)
    finally:
        job_id_var.reset(token)


def run_job(runtime: Runtime, job_id: str) -> str:
    """The task body, callable without Celery (tests, other pools)."""
    claimed = claim(runtime, job_id)
    if isinstance(claimed, str):
        return claimed
    record = claimed
    queue_s = record.queue_s if record.queue_s is not None else (record.started_at or 0) - record.created_at
    logger.info("job started", extra={"attempt": record.attempts, "queue_s": round(queue_s, 3), "style": record.style})
    if record.attempts == 1:
        metrics.observe_queue_wait(queue_s)
    with metrics.running_job():
        try:
            return process(runtime, record, queue_s)
        except redis.RedisError:
            raise
        except SoftTimeLimitExceeded:
            detail = f"Inference took longer than {runtime.settings.task_soft_time_limit_s} s."
            return fail(runtime, record, ErrorCode.INFERENCE_TIMEOUT, detail, outcome="timeout")
        except inference_errors.InferenceError as exc:
            return fail(runtime, record, error_code_for(exc), str(exc))
        except Exception:
            logger.exception("job failed with an unexpected error")
            return fail(runtime, record, ErrorCode.INTERNAL_ERROR, "The worker hit an unexpected error.")


def claim(runtime: Runtime, job_id: str) -> JobRecord | str:
    """Take the job for this delivery (the running record), or return the outcome without running it."""
    key = job_key(job_id)
    with runtime.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.hgetall(key)
                if not raw:
                    logger.warning("job record missing (expired or never stored); dropping the message")
                    return "skipped"
                record = JobRecord.from_hash(raw)
                started = now()
                if record.state.terminal:
                    logger.info("job already finished; ignoring a repeated delivery", extra={"state": record.state})
                    return "skipped"
                if is_stale(record, started):
                    pipe.unwatch()
                    return fail(runtime, record, ErrorCode.WORKER_LOST, STALE_DETAIL)
                if record.state is JobState.RUNNING:
                    # Another delivery of this message is running it now: never run a job twice at once.
                    logger.warning("job is running elsewhere; ignoring a duplicate delivery")
                    return "skipped"
                attempts = record.attempts + 1
                if attempts > runtime.settings.max_attempts:
                    pipe.unwatch()
                    detail = f"The job stopped a worker {attempts - 1} times and will not be retried."
                    return fail(runtime, record, ErrorCode.WORKER_LOST, detail)
                deadline = running_deadline(started, runtime.settings.task_time_limit_s)
                pipe.multi()
                pipe.hset(key, "attempts", str(attempts))
                add_mark_running(pipe, record, started, deadline_at=deadline)
                pipe.execute()
            except redis.WatchError:
                continue
            queue_s = record.queue_s if record.queue_s is not None else max(0.0, started - record.created_at)
            update = {"state": JobState.RUNNING, "attempts": attempts, "started_at": started, "queue_s": queue_s}
            return record.model_copy(update={**update, "deadline_at": deadline})


def process(runtime: Runtime, record: JobRecord, queue_s: float) -> str:
    client = runtime.redis
    data = client.get(input_key(record.id))
    if not isinstance(data, bytes):
        return fail(runtime, record, ErrorCode.INPUT_EXPIRED, "The input expired before a worker took the job.")
    image = Image.frombytes("RGB", (record.width, record.height), data)
    stylizer = runtime.stylizer(record.style)
    start = time.perf_counter()
    output = stylizer.stylize(image)
    inference_s = time.perf_counter() - start
    encoded = encode_image(output, record.format, quality=runtime.settings.output_quality)
    if not client.set(result_key(record.id), encoded, nx=True, ex=record.result_ttl_s):
        logger.warning("result already stored by an earlier delivery; keeping it")
    previous = client.get(SERVICE_TIME_KEY)
    pipe = client.pipeline()
    add_mark_succeeded(
        pipe,
        record,
        inference_s=inference_s,
        width=output.width,
        height=output.height,
        size=len(encoded),
        precision=str(stylizer.precision),
    )
    pipe.set(SERVICE_TIME_KEY, next_service_time(previous, inference_s))
    pipe.execute()
    metrics.observe_task(record.style, "succeeded", inference_s=inference_s, total_s=now() - record.created_at)
    logger.info(
        "job succeeded",
        extra={"inference_s": round(inference_s, 3), "bytes": len(encoded), "size": f"{output.width}x{output.height}"},
    )
    return "succeeded"


def error_code_for(exc: inference_errors.InferenceError) -> ErrorCode:
    if isinstance(exc, inference_errors.ImageTooLargeError):
        return ErrorCode.TOO_MANY_PIXELS
    if isinstance(exc, inference_errors.InvalidImageError | inference_errors.UnsupportedFormatError):
        return ErrorCode.INVALID_IMAGE
    if isinstance(exc, inference_errors.WeightsError):
        return ErrorCode.MODEL_UNAVAILABLE
    return ErrorCode.INTERNAL_ERROR


def fail(runtime: Runtime, record: JobRecord, code: ErrorCode, detail: str, *, outcome: str = "failed") -> str:
    pipe = runtime.redis.pipeline()
    add_mark_failed(pipe, record, code, detail)
    pipe.execute()
    metrics.observe_task(record.style, outcome)
    logger.warning("job failed", extra={"error": code.value, "detail": detail})
    return "failed"


def requeue_job_id(runtime: Runtime, job_id: str) -> None:
    """Show a running job as waiting again after its pool child died (from the main worker process)."""
    try:
        raw = runtime.redis.hgetall(job_key(job_id))
        if raw and JobRecord.from_hash(raw).state is JobState.RUNNING:
            pipe = runtime.redis.pipeline()
            add_requeue(pipe, JobRecord.from_hash(raw))
            pipe.execute()
            logger.warning("worker process lost mid-job; the job is queued again", extra={"job_id": job_id})
    except redis.RedisError:
        # The record stays running; its deadline ends the job if the message never comes back.
        logger.warning("could not requeue the job of a lost worker process", extra={"job_id": job_id}, exc_info=True)


def fail_job_id(runtime: Runtime, job_id: str, code: ErrorCode, detail: str) -> str | None:
    """End a job known only by id (from the main worker process); a finished job is left alone.

    Returns the job's style when this call ended it, else None.
    """
    raw = runtime.redis.hgetall(job_key(job_id))
    if raw and not JobRecord.from_hash(raw).state.terminal:
        record = JobRecord.from_hash(raw)
        pipe = runtime.redis.pipeline()
        add_mark_failed(pipe, record, code, detail)
        pipe.execute()
        logger.warning("job failed", extra={"job_id": job_id, "error": code.value, "detail": detail})
        return record.style
    return None
