"""The one task, ``animegan.stylize``: read the input from Redis, stylize, write the result back.

Every path ends the job in a terminal state with a safe message, except a Redis outage (nothing
can be recorded then; the record expires with its TTL). A worker killed mid-job has the message
redelivered (acks late, reject on worker lost); the ``attempts`` counter in the record turns a
job that keeps killing workers into ``failed`` instead of a loop. The result is written with
SET NX, so a redelivered job never writes twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from PIL import Image

from inference import errors as inference_errors
from inference.imageio import encode_image
from worker import contract, metrics
from worker.contract import ErrorCode, JobRecord
from worker.log import job_id_var
from worker.runtime import Runtime, get_runtime

logger = logging.getLogger(__name__)


class StylizeTask(Task):  # type: ignore[misc]
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # Called in the main worker process when the hard time limit kills a child: the message
        # is acknowledged and never comes back, so this is the last chance to end the job.
        if isinstance(exc, TimeLimitExceeded) and args:
            runtime = get_runtime()
            limit = runtime.settings.task_time_limit_s
            fail_job_id(runtime, str(args[0]), ErrorCode.INFERENCE_TIMEOUT, f"Inference was stopped after {limit} s.")
            metrics.observe_task("timeout")


@shared_task(name=contract.TASK_NAME, bind=True, base=StylizeTask, ignore_result=True)  # type: ignore[untyped-decorator]
def stylize(self: Task, job_id: str) -> str:
    """Run one job; returns the outcome (succeeded, failed or skipped) for the worker log."""
    token = job_id_var.set(job_id)
    try:
        return run_job(get_runtime(), job_id)
    finally:
        job_id_var.reset(token)


def run_job(runtime: Runtime, job_id: str) -> str:
    """The task body, callable without Celery (tests, other pools)."""
    client = runtime.redis
    raw = client.hgetall(contract.job_key(job_id))
    if not raw:
        logger.warning("job record missing (expired or never stored); dropping the message")
        return "skipped"
    record = JobRecord.from_hash(raw)
    if record.state.terminal:
        logger.info("job already finished; ignoring a repeated delivery", extra={"state": record.state.value})
        return "skipped"
    attempts = int(client.hincrby(contract.job_key(job_id), "attempts", 1))
    if attempts > runtime.settings.max_attempts:
        detail = f"The job stopped a worker {attempts - 1} times and will not be retried."
        return fail(runtime, record, ErrorCode.WORKER_LOST, detail)
    started = contract.now()
    pipe = client.pipeline()
    contract.queue_running(pipe, record, started)
    pipe.execute()
    queue_s = record.queue_s if record.queue_s is not None else started - record.created_at
    logger.info("job started", extra={"attempt": attempts, "queue_s": round(queue_s, 3), "style": record.style})
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


def process(runtime: Runtime, record: JobRecord, queue_s: float) -> str:
    client = runtime.redis
    data = client.get(contract.input_key(record.id))
    if not isinstance(data, bytes):
        return fail(runtime, record, ErrorCode.INPUT_EXPIRED, "The input expired before a worker took the job.")
    image = Image.frombytes("RGB", (record.width, record.height), data)
    stylizer = runtime.stylizer(record.style)
    start = time.perf_counter()
    output = stylizer.stylize(image)
    inference_s = time.perf_counter() - start
    encoded = encode_image(output, record.format, quality=runtime.settings.output_quality)
    if not client.set(contract.result_key(record.id), encoded, nx=True, ex=record.result_ttl_s):
        logger.warning("result already stored by an earlier delivery; keeping it")
    previous = client.get(contract.SERVICE_TIME_KEY)
    pipe = client.pipeline()
    contract.queue_succeeded(
        pipe, record, inference_s=inference_s, width=output.width, height=output.height, size=len(encoded)
    )
    pipe.set(contract.SERVICE_TIME_KEY, contract.next_service_time(previous, inference_s))
    pipe.execute()
    metrics.observe_task("succeeded", queue_s=queue_s, inference_s=inference_s)
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
    contract.queue_failed(pipe, record, code, detail)
    pipe.execute()
    metrics.observe_task(outcome)
    logger.warning("job failed", extra={"error": code.value, "detail": detail})
    return "failed"


def fail_job_id(runtime: Runtime, job_id: str, code: ErrorCode, detail: str) -> None:
    """End a job known only by id (from the main worker process); a finished job is left alone."""
    raw = runtime.redis.hgetall(contract.job_key(job_id))
    if raw and not JobRecord.from_hash(raw).state.terminal:
        pipe = runtime.redis.pipeline()
        contract.queue_failed(pipe, JobRecord.from_hash(raw), code, detail)
        pipe.execute()
        logger.warning("job failed", extra={"job_id": job_id, "error": code.value, "detail": detail})
