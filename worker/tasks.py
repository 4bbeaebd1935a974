"""The one task, ``animegan.stylize``: take the fairest waiting job, stylize it, write the result.

A message is a token, not an order: its delivery claims whichever job the fair queue
(``jobstore.queue``) puts next, round-robin across clients, and leases it to this process. A
video's segments and join are jobs of that queue too; ``worker.video_tasks`` runs them.
Delivery is at-least-once (acks late, requeue when a pool child dies); these guards make it
exactly-once as far as a client can tell:

- A message that finds no waiting job (a duplicate delivery, the original message after its
  visibility timeout, a job already handed back and run) is acknowledged unrun.
- A running job is leased to its process and renewed every few seconds (``worker.leases``). A pool
  child killed mid-job is seen by the main worker process, which hands its job back at once; a
  whole worker that vanished stops renewing, and the sweeper (``worker.sweeper``) hands the job
  back when the lease passes. The ``attempts`` counter turns a job that keeps killing workers
  into ``failed`` instead of a loop.
- The result is written with SET NX, so a re-run job never writes twice.
- The hard time limit is ended from the main process (``StylizeRequest.on_timeout``, in every
  Celery 5 release), the soft one in the child. Redis errors on the job's writes, and object store
  errors on its input and result (``jobstore.blobs``), are retried with backoff for
  ``ANIMEGAN_STORE_RETRY_S``; past that the job is left to its lease, which hands it back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded, WorkerLostError
from celery.worker.request import Request
from PIL import Image

from imaging import errors as image_errors
from imaging.encode import encode_image
from imaging.formats import CONTENT_TYPES
from inference import errors as inference_errors
from jobstore.keys import SERVICE_TIME_KEY, TASK_NAME, job_key
from jobstore.queue import claim_call, next_service_time, parse_claimed
from jobstore.records import ErrorCode, JobRecord, now
from jobstore.transitions import add_mark_failed, add_mark_succeeded
from telemetry.logs import job_id_var
from worker import leases, metrics
from worker.runtime import Runtime, get_runtime, holder_of
from worker.store_retry import StoreUnavailable, store_retry
from worker.sweeper import EXHAUSTED_DETAIL
from worker.video_ends import fail_part
from worker.video_tasks import process_part

logger = logging.getLogger(__name__)

__all__ = ["StoreUnavailable", "fail", "run_job", "store_retry", "stylize"]


class StylizeRequest(Request):  # type: ignore[misc]
    """The main worker process's view of one delivery: notices a pool child that died or timed out."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        # The hard limit killed the child: end its job now (the message is acknowledged, never redone).
        if not soft and self.worker_pid:
            runtime = get_runtime()
            detail = f"Inference was stopped after {runtime.settings.task_time_limit_s} s."
            runtime.sweeper_for_main().fail_held(holder_of(self.worker_pid), detail)
        super().on_timeout(soft, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> None:
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # unwrap billiard's ExceptionWithTraceback
        if isinstance(exc, WorkerLostError) and self.worker_pid:
            # Celery requeues the message (reject_on_worker_lost); the job goes back in line now,
            # instead of when its lease passes.
            try:
                get_runtime().sweeper_for_main().hand_back_holder(holder_of(self.worker_pid))
            except redis.RedisError:
                logger.warning("could not hand back the job of a lost worker process; its lease will", exc_info=True)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


class StylizeTask(Task):  # type: ignore[misc]
    Request = StylizeRequest


@shared_task(name=TASK_NAME, bind=True, base=StylizeTask, ignore_result=True)  # type: ignore[untyped-decorator]
def stylize(self: Task, job_id: str | None = None) -> str:
    """Run the fairest waiting job; returns the outcome for the worker log.

    ``job_id`` names the job whose submission sent this message: a hint for the log only.
    """
    return run_job(get_runtime(), job_id)


def run_job(runtime: Runtime, hint: str | None = None) -> str:
    """The task body, callable without Celery (tests, other pools)."""
    try:
        record = claim(runtime)
    except StoreUnavailable:
        # The message is acknowledged; the sweeper re-sends one for every job left waiting without.
        logger.warning("job store unreachable; no job claimed for this message", extra={"message_job_id": hint})
        return "skipped"
    if record is None:
        logger.info("no waiting job for this message; dropping it", extra={"message_job_id": hint})
        return "skipped"
    token = job_id_var.set(record.id)
    try:
        if record.attempts > runtime.settings.max_attempts:
            return fail(runtime, record, ErrorCode.WORKER_LOST, EXHAUSTED_DETAIL.format(attempts=record.attempts - 1))
        with leases.held(runtime.redis, runtime.scripts, record.id, runtime.worker_id, runtime.settings.lease_s):
            return run_claimed(runtime, record)
    except StoreUnavailable as exc:
        logger.warning("job store unreachable; the job is handed back through its lease", extra={"during": str(exc)})
        return "handed-back"
    finally:
        job_id_var.reset(token)


def run_claimed(runtime: Runtime, record: JobRecord) -> str:
    queue_s = record.queue_s if record.queue_s is not None else (record.started_at or 0) - record.created_at
    logger.info("job started", extra={"attempt": record.attempts, "queue_s": round(queue_s, 3), "style": record.style})
    if record.attempts == 1:
        metrics.observe_queue_wait(queue_s)
    with metrics.running_job():
        try:
            # A video's segments and join are jobs of the fair queue too (worker.video_tasks).
            return process_part(runtime, record) if record.parent else process(runtime, record)
        except StoreUnavailable:
            raise
        except SoftTimeLimitExceeded:
            detail = f"Inference took longer than {runtime.settings.task_soft_time_limit_s} s."
            return fail(runtime, record, ErrorCode.INFERENCE_TIMEOUT, detail, outcome="timeout")
        except (image_errors.ImageError, inference_errors.InferenceError) as exc:
            return fail(runtime, record, error_code_for(exc), str(exc))
        except Exception:
            logger.exception("job failed with an unexpected error")
            return fail(runtime, record, ErrorCode.INTERNAL_ERROR, "The worker hit an unexpected error.")


def claim(runtime: Runtime) -> JobRecord | None:
    """Take the next job round-robin across clients, leased to this process; None if none waits.

    A job out of attempts comes back with ``attempts`` above the limit, not running: the caller fails it.
    """
    keys, args = claim_call(runtime.worker_id, now(), runtime.settings.lease_s, runtime.settings.max_attempts)
    claimed = parse_claimed(store_retry(runtime, "claiming", lambda: runtime.scripts.claim(keys=keys, args=args)))
    if claimed is None:
        return None
    raw = store_retry(runtime, "reading the job", lambda: runtime.redis.hgetall(job_key(claimed.job_id)))
    record = JobRecord.from_hash(raw)
    if claimed.outcome == "exhausted":
        return record.model_copy(update={"attempts": record.attempts + 1})
    return record


def process(runtime: Runtime, record: JobRecord) -> str:
    client = runtime.redis
    blobs = runtime.blobs_for(record)
    data = store_retry(runtime, "reading the input", lambda: blobs.read_input(record))
    if data is None:
        return fail(runtime, record, ErrorCode.INPUT_EXPIRED, "The input expired before a worker took the job.")
    image = Image.frombytes("RGB", (record.width, record.height), data)
    stylizer = runtime.stylizer(record.style)
    start = time.perf_counter()
    output = stylizer.stylize(image)
    inference_s = time.perf_counter() - start
    settings = runtime.settings
    quality = settings.avif_quality if record.format == "avif" else settings.output_quality
    encoded = encode_image(output, record.format, quality=quality)
    content_type = CONTENT_TYPES[record.format]
    stored = store_retry(runtime, "storing the result", lambda: blobs.write_result(record, encoded, content_type))
    if not stored:
        logger.warning("result already stored by an earlier run; keeping it")

    def complete() -> None:
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

    store_retry(runtime, "completing the job", complete)
    metrics.observe_task(record.style, "succeeded", inference_s=inference_s, total_s=now() - record.created_at)
    logger.info(
        "job succeeded",
        extra={"inference_s": round(inference_s, 3), "bytes": len(encoded), "size": f"{output.width}x{output.height}"},
    )
    return "succeeded"


def error_code_for(exc: image_errors.ImageError | inference_errors.InferenceError) -> ErrorCode:
    if isinstance(exc, image_errors.ImageTooLargeError):
        return ErrorCode.TOO_MANY_PIXELS
    if isinstance(exc, image_errors.ImageError):
        return ErrorCode.INVALID_IMAGE
    if isinstance(exc, inference_errors.WeightsError):
        return ErrorCode.MODEL_UNAVAILABLE
    return ErrorCode.INTERNAL_ERROR


def fail(runtime: Runtime, record: JobRecord, code: ErrorCode, detail: str, *, outcome: str = "failed") -> str:
    if record.parent:
        # A part of a video fails the whole video (its other parts leave the queue).
        store_retry(runtime, "failing the video", lambda: fail_part(runtime.redis, record, code, detail))
        metrics.observe_segment("failed")
        return "failed"

    def write() -> None:
        pipe = runtime.redis.pipeline()
        add_mark_failed(pipe, record, code, detail)
        pipe.execute()

    store_retry(runtime, "failing the job", write)
    metrics.observe_task(record.style, outcome)
    logger.warning("job failed", extra={"error": code.value, "detail": detail})
    return "failed"
