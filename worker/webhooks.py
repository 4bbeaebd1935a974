"""The webhook sender: a small process beside each worker that posts the deliveries that are due.

Why a process and not a thread of the Celery main process: that process forks the pool children
(at start and whenever one is replaced), and a thread holding a lock at the moment of a fork
(prometheus_client's multiprocess lock, the resolver's) leaves the child with it locked for ever.
A process of its own shares nothing with the pool, costs one small interpreter (no model, no
torch), and can be restarted on its own.

``worker.webhook_process.start_sender`` runs ``python -m worker.webhooks`` from the worker's
``worker_init`` hook, with the worker's environment; ``stop_sender`` ends it at the worker's
shutdown, letting attempts in flight finish. The sender also exits when its parent worker is gone
(SIGKILL included), so it never outlives it. Without ANIMEGAN_WEBHOOK_SECRET no sender starts (the gateway then refuses
callbacks). Several workers run several senders against one Redis: a delivery is claimed
atomically with a lease (``jobstore.webhooks``), so no attempt is sent twice at once, and one
whose sender died mid-send is retried when the lease ends.

Each of ``ANIMEGAN_WEBHOOK_CONCURRENCY`` threads claims a due delivery, renders its body at the
first attempt (the job as ``GET /jobs/{id}`` shows it, with its presigned ``links.download``
when the result is in the object store, or for ``batch.completed`` the batch as
``GET /batches/{id}`` does), makes the attempt and settles it: a failed
attempt is tried again after the next delay of ``ANIMEGAN_WEBHOOK_RETRY_SCHEDULE_S``, the last one
is given up.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

import redis

from jobstore.batch_view import Batch
from jobstore.batches import read_batch_sync
from jobstore.blobs import in_object_store, result_link
from jobstore.job_view import Job, ResultLink
from jobstore.keys import job_key
from jobstore.objectstore import ObjectStore, StoreError
from jobstore.records import JobKind, JobRecord, now
from jobstore.video_view import VideoJob
from jobstore.videos import read_parts
from jobstore.webhooks import Delivery, DeliveryState, DeliveryStore
from telemetry.families import observe_store
from worker import metrics
from worker.config import WorkerSettings, load_worker_settings
from worker.log import configure_logging
from worker.webhook_delivery import AttemptResult, Outcome, WebhookPoster

logger = logging.getLogger(__name__)

REDIS_RETRY_S = 5.0


class WebhookSender:
    """Claims, sends and settles deliveries; ``run`` is the loop of one sender thread."""

    def __init__(
        self, settings: WorkerSettings, client: redis.Redis, poster: WebhookPoster, objects: ObjectStore | None = None
    ) -> None:
        self.settings = settings
        self.redis = client
        self.store = DeliveryStore(client, keep_s=settings.webhook_keep_s)
        self.poster = poster
        # With object storage, bodies carry the result's presigned link, as GET /jobs/{id} does.
        self.objects = objects

    def run(self, stop: threading.Event, parent_pid: int | None = None) -> None:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                logger.warning("the worker that started the webhook sender is gone; stopping")
                stop.set()
                return
            try:
                busy = self.run_once()
            except redis.RedisError as exc:
                logger.warning("webhook sender: Redis unavailable (%s); retrying in %g s", exc, REDIS_RETRY_S)
                stop.wait(REDIS_RETRY_S)
                busy = False
            except Exception:
                # A bug must not silently end this thread; the claimed delivery is retried after its lease.
                logger.exception("webhook sender: unexpected error")
                busy = False
            if not busy:
                stop.wait(self.settings.webhook_poll_interval_s)

    def run_once(self) -> bool:
        """Make one due attempt; False when nothing was due."""
        delivery = self.store.claim_due(self.settings.webhook_lease_s)
        if delivery is None:
            return False
        self.attempt(delivery)
        return True

    def attempt(self, delivery: Delivery) -> None:
        if delivery.body is None:
            try:
                body = self.render_batch(delivery.batch_id) if delivery.batch_id else self.render(delivery.job_id)
            except ValueError:  # a record this version cannot read: retrying cannot help
                logger.exception("webhook body could not be rendered", extra={"job_id": delivery.job_id})
                body = None
            if body is None:
                self._end(
                    delivery, AttemptResult(Outcome.FAILED, error="the job's record is gone or unreadable"), last=True
                )
                return
            delivery = self.store.store_body(delivery, body)
        assert delivery.body is not None
        result = self.poster.post(delivery, delivery.body)
        self._end(delivery, result, last=delivery.attempt + 1 >= len(self.settings.webhook_retry_schedule_s))

    def render(self, job_id: str) -> bytes | None:
        """The job as GET /jobs/{id} answers it now (a terminal job: no queue position, never deduplicated)."""
        raw = self.redis.hgetall(job_key(job_id))
        if not raw:
            return None
        record = JobRecord.from_hash(raw)
        if record.job_kind is JobKind.VIDEO:
            return (
                VideoJob.from_record(record, read_parts(self.redis, record), download=self._link(record))
                .model_dump_json()
                .encode()
            )
        return self.job(record).model_dump_json().encode()

    def job(self, record: JobRecord) -> Job:
        """The job's body, with its download link when its result is in the object store."""
        return Job.from_record(record, download=self._link(record))

    def _link(self, record: JobRecord) -> ResultLink | None:
        if self.objects is None or not in_object_store(record):
            return None
        try:
            return result_link(self.objects, record, self.settings.s3_url_ttl_s)
        except StoreError:
            logger.warning("could not sign the result's link; the body names the gateway's URL only")
            return None

    def render_batch(self, batch_id: str) -> bytes | None:
        """The batch as GET /batches/{id} answers it now (its jobs all ended: no queue positions)."""
        found = read_batch_sync(self.redis, batch_id)
        if found is None:
            return None
        batch, records = found
        jobs = [None if r is None else self.job(r) for r in records]
        return Batch.build(batch, jobs).model_dump_json().encode()

    def _end(self, delivery: Delivery, result: AttemptResult, *, last: bool) -> None:
        fields = {"last_status": str(result.status or ""), "last_error": result.error}
        if result.outcome is Outcome.DELIVERED:
            state, outcome, next_due = DeliveryState.DELIVERED, "delivered", None
            fields["delivered_at"] = str(now())
        elif result.outcome is Outcome.REFUSED:
            state, outcome, next_due = DeliveryState.REFUSED, "refused", None
        elif last:
            state, outcome, next_due = DeliveryState.GIVEN_UP, "given_up", None
        else:
            delay = self.settings.webhook_retry_schedule_s[delivery.attempt + 1]
            state, outcome, next_due = DeliveryState.PENDING, "retried", now() + delay
        if not self.store.settle(delivery, state, next_due=next_due, **fields):
            logger.warning("webhook claim lost before the attempt was recorded", extra={"delivery": delivery.id})
            return
        metrics.observe_webhook(delivery.event.value, outcome)
        log = logger.info if outcome == "delivered" else logger.warning
        log(
            "webhook %s",
            outcome,
            extra={
                "delivery": delivery.id,
                "job_id": delivery.job_id,
                "batch_id": delivery.batch_id,
                "event": delivery.event.value,
                "attempt": delivery.attempt + 1,
                "status": result.status,
                "error": result.error,
            },
        )


def serve(settings: WorkerSettings, parent_pid: int | None = None) -> None:
    """Run the sender threads until SIGTERM/SIGINT (or the parent worker's end)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    metrics.init_webhook_labels()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10)
    poster = WebhookPoster(settings)
    objects = ObjectStore(settings, observe=observe_store) if settings.object_store_enabled else None
    sender = WebhookSender(settings, client, poster, objects)
    threads = [
        threading.Thread(target=sender.run, args=(stop, parent_pid), name=f"webhook-{n}", daemon=True)
        for n in range(settings.webhook_concurrency)
    ]
    for thread in threads:
        thread.start()
    logger.info("webhook sender started", extra={"threads": len(threads)})
    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join(settings.webhook_lease_s)
    poster.close()
    client.close()
    logger.info("webhook sender stopped")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    parent = int(args[1]) if len(args) == 2 and args[0] == "--parent" else None
    settings = load_worker_settings()
    configure_logging(settings.log_format, settings.log_level)
    if not settings.webhooks_enabled:
        raise SystemExit("animegan webhooks: ANIMEGAN_WEBHOOK_SECRET is unset; nothing can be signed")
    serve(settings, parent)


if __name__ == "__main__":
    main()
