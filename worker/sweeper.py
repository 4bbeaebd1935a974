"""The sweeper: finds what no reader should have to find, from the workers themselves.

Every worker's main process runs one from Celery's timer (``worker.runtime.SweeperStep``: on the
thread that forks the pool children, so no other thread of the supervisor holds a lock a child would
inherit). A Redis lock (``keys.SWEEPER_LOCK_KEY``, expiring after three intervals) lets one of them
sweep at a time; another takes over within three intervals when that worker dies. Each sweep, every
``sweep_interval_s``:

- hands back every running job whose lease passed (its process is gone): re-queued at the head of
  its client's line with a fresh message, or failed ``worker-lost`` once it used its attempts;
- fails waiting jobs whose input expired (``input-expired``; in the object store: whose deletion
  came due, ``jobstore.blobs``; for a video's part: its video's clip, which fails the video) and
  drops waiting entries whose record is gone;
- sends a message for waiting jobs that have none: the broker's queue stayed empty for two sweeps
  while jobs waited (the gateway died between storing a job and sending its message). Extra
  messages are harmless: a message that finds no waiting job is dropped unrun.

GET requests never write: the job store's state is kept true by the workers. This module knows
nothing of Celery: messages go out through the ``send_token`` it is given. It never calls the object
store: it runs in the process that forks the pool children, and obstore is not fork-safe; the
worker's blob reaper process (``worker.blob_reaper``) deletes the objects that are due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from jobstore.blobs import input_name
from jobstore.keys import (
    BLOBS_DUE_KEY,
    LEASES_KEY,
    QUEUE_NAME,
    SWEEPER_LOCK_KEY,
    WAITING_KEY,
    clip_chunk_key,
    input_key,
    job_key,
)
from jobstore.queue import QueueScripts, expire_call, ids
from jobstore.records import ErrorCode, JobRecord, as_text, now
from jobstore.transitions import add_mark_failed
from worker import metrics
from worker.video_ends import fail_part

logger = logging.getLogger(__name__)

SendToken = Callable[[str], None]
EXHAUSTED_DETAIL = "The job stopped a worker {attempts} times and will not be retried."


class Sweeper:
    """One sweep at a time across all workers; ``tick()`` every ``interval_s``."""

    def __init__(
        self,
        client: redis.Redis,
        send_token: SendToken,
        *,
        holder: str,
        interval_s: float,
        max_attempts: int,
        broker: redis.Redis | None = None,
    ) -> None:
        self.redis = client
        # Where Celery's queue list lives: the job store itself unless ANIMEGAN_BROKER_URL names another.
        self.broker = broker or client
        self.scripts = QueueScripts(client)
        self.send_token = send_token
        self.holder = holder
        self.interval_s = interval_s
        self.max_attempts = max_attempts
        self._starved_head: str | None = None

    def tick(self) -> None:
        try:
            if self.acquire():
                self.sweep()
        except redis.RedisError:
            logger.warning("sweep failed (Redis unreachable); next one in %.0f s", self.interval_s)
        except Exception:
            logger.exception("sweep failed")

    def acquire(self) -> bool:
        """Take or keep the sweeper lock."""
        ttl_ms = int(self.interval_s * 3000)
        if self.redis.set(SWEEPER_LOCK_KEY, self.holder, nx=True, px=ttl_ms):
            return True
        if self.redis.get(SWEEPER_LOCK_KEY) == self.holder.encode():
            self.redis.pexpire(SWEEPER_LOCK_KEY, ttl_ms)
            return True
        return False

    def sweep(self) -> None:
        at = now()
        for job_id in ids(self.redis.zrangebyscore(LEASES_KEY, "-inf", at)):
            self.hand_back(job_id, at)
        self.fail_expired_inputs()
        self.top_up_tokens()

    def hand_back(self, job_id: str, at: float, holder: str | None = None) -> str:
        """Re-queue (or fail, out of attempts) a running job whose lease passed or whose holder died."""
        keys, args = expire_call(job_id, at, self.max_attempts, holder)
        outcome, attempts = ids(self.scripts.expire(keys=keys, args=args))
        if outcome == "requeued":
            logger.warning("worker lost mid-job; the job is queued again", extra={"job_id": job_id})
            metrics.observe_handback("requeued")
            self.send_token(job_id)
        elif outcome == "exhausted":
            self.fail(job_id, ErrorCode.WORKER_LOST, EXHAUSTED_DETAIL.format(attempts=attempts))
            metrics.observe_handback("exhausted")
        return outcome

    def hand_back_holder(self, holder: str) -> None:
        """Hand back at once every job leased to ``holder`` (a pool child the main process saw die)."""
        for job_id in ids(self.redis.zrange(LEASES_KEY, 0, -1)):
            if self.redis.hget(job_key(job_id), "holder") == holder.encode():
                self.hand_back(job_id, now(), holder)

    def fail_held(self, holder: str, detail: str) -> list[JobRecord]:
        """End as ``inference-timeout`` every job leased to ``holder`` (a child the hard time limit killed)."""
        ended = []
        for job_id in ids(self.redis.zrange(LEASES_KEY, 0, -1)):
            if self.redis.hget(job_key(job_id), "holder") == holder.encode():
                record = self.fail(job_id, ErrorCode.INFERENCE_TIMEOUT, detail, outcome="timeout")
                ended += [record] if record is not None else []
        return ended

    def fail_expired_inputs(self) -> None:
        waiting = ids(self.redis.lrange(WAITING_KEY, 0, -1))
        if not waiting:
            return
        pipe = self.redis.pipeline(transaction=False)
        for job_id in waiting:
            pipe.hget(job_key(job_id), "parent")
        # A video's part reads its video's clip: that is the input that must still be there.
        owners = [as_text(parent) if parent else job_id for job_id, parent in zip(waiting, pipe.execute(), strict=True)]
        for job_id, owner in zip(waiting, owners, strict=True):
            pipe.exists(job_key(job_id))
            pipe.exists(input_key(owner), clip_chunk_key(owner, 0))
            # An input in the object store is there until its scheduled deletion (jobstore.blobs).
            pipe.zscore(BLOBS_DUE_KEY, input_name(owner))
        found = pipe.execute()
        at = now()
        for job_id, has_record, in_redis, due in zip(waiting, found[::3], found[1::3], found[2::3], strict=True):
            has_input = in_redis or (due is not None and float(due) > at)
            if not has_record:
                self.redis.lrem(WAITING_KEY, 1, job_id)  # the record expired: nothing left to run
            elif not has_input:
                self.fail(job_id, ErrorCode.INPUT_EXPIRED, "The input expired before a worker took the job.")

    def top_up_tokens(self) -> None:
        """Send a message per waiting job when the broker's queue stayed empty for two sweeps."""
        head = self.redis.lindex(WAITING_KEY, 0)
        if head is None or self.broker.llen(QUEUE_NAME) > 0:
            self._starved_head = None
            return
        if self._starved_head != as_text(head):
            self._starved_head = as_text(head)
            return
        waiting = int(self.redis.llen(WAITING_KEY))
        logger.warning("jobs waiting without messages; sending them", extra={"waiting": waiting})
        for _ in range(waiting):
            self.send_token(as_text(head))
        self._starved_head = None

    def fail(self, job_id: str, code: ErrorCode, detail: str, *, outcome: str = "failed") -> JobRecord | None:
        """End a job that has not ended yet; returns it, or None when it had ended or is gone."""
        raw = self.redis.hgetall(job_key(job_id))
        if not raw:
            return None
        record = JobRecord.from_hash(raw)
        if record.state.terminal:
            return None
        if record.parent:
            # A part of a video: the whole video fails, its other parts leave the queue.
            fail_part(self.redis, record, code, detail)
            metrics.observe_segment("failed")
            return record
        pipe = self.redis.pipeline()
        add_mark_failed(pipe, record, code, detail)
        pipe.execute()
        metrics.observe_task(record.style, outcome)
        logger.warning("job failed", extra={"job_id": job_id, "error": code.value, "detail": detail})
        return record
