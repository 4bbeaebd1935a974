"""The blob reaper: a small process beside each worker that deletes object-store blobs when they are due.

Only with ANIMEGAN_S3_BUCKET. Why a process: the Celery main process forks the pool children, and
obstore is not fork-safe (a process that made one call leaves its later children's calls hanging,
``jobstore.objectstore``), so the main process never calls the store; this process, started with
``subprocess`` (fork and exec), may.

``worker.reaper_process.start_reaper`` runs ``python -m worker.blob_reaper --parent PID`` from the
worker's ``worker_init`` hook. The reaper first probes the bucket (writes and deletes a small
object) and answers on its stdout with one line: ``ready``, or ``refused: <why>`` (missing bucket,
refused credentials), on which the worker stops with that line. A store that cannot be reached at
start is only a warning: it may come up after the workers. Then, every ``ANIMEGAN_SWEEP_INTERVAL_S``,
the reaper holding the Redis lock ``reaper`` (one at a time across workers; another takes over
within three intervals) deletes the objects whose time came (``jobstore.blobs``: inputs of ended
jobs at once, results at their TTL, an unfinished upload at the input TTL) and then forgets them;
a deletion that failed stays due and is tried again. It exits with its parent worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from types import FrameType

import redis

from jobstore.blobs import due_names, forget
from jobstore.keys import REAPER_LOCK_KEY
from jobstore.objectstore import ObjectStore, StoreError, StoreRefused
from jobstore.records import now
from telemetry.families import init_store_labels, observe_store
from worker.config import WorkerSettings, load_worker_settings
from worker.log import configure_logging

logger = logging.getLogger(__name__)


class BlobReaper:
    """Deletes due objects; ``tick()`` every ``interval_s``."""

    def __init__(self, client: redis.Redis, store: ObjectStore, *, holder: str, interval_s: float) -> None:
        self.redis = client
        self.store = store
        self.holder = holder
        self.interval_s = interval_s

    def acquire(self) -> bool:
        ttl_ms = int(self.interval_s * 3000)
        if self.redis.set(REAPER_LOCK_KEY, self.holder, nx=True, px=ttl_ms):
            return True
        if self.redis.get(REAPER_LOCK_KEY) == self.holder.encode():
            self.redis.pexpire(REAPER_LOCK_KEY, ttl_ms)
            return True
        return False

    def reap(self) -> int:
        """Delete every object due now (in batches); returns how many were deleted."""
        deleted = 0
        while True:
            names = due_names(self.redis, now())
            if not names:
                return deleted
            self.store.delete(names)
            forget(self.redis, names)
            deleted += len(names)

    def tick(self) -> int:
        try:
            if self.acquire():
                return self.reap()
        except redis.RedisError as exc:
            logger.warning("blob reaper: Redis unavailable (%s); next pass in %.0f s", exc, self.interval_s)
        except StoreError as exc:
            logger.warning("blob reaper: object store unavailable (%s); next pass in %.0f s", exc, self.interval_s)
        return 0

    def run(self, stop: threading.Event, parent_pid: int | None = None) -> None:
        while not stop.wait(self.interval_s):
            if parent_pid is not None and os.getppid() != parent_pid:
                logger.warning("the worker that started the blob reaper is gone; stopping")
                return
            deleted = self.tick()
            if deleted:
                logger.info("deleted due objects", extra={"objects": deleted})


def probe(store: ObjectStore) -> str:
    """The line the worker reads at start: ``ready`` or ``refused: <why>``."""
    try:
        store.probe()
    except StoreRefused as exc:
        return f"refused: object store: {exc}"
    except StoreError as exc:
        logger.warning("object store unreachable at start; the worker starts anyway: %s", exc)
    return "ready"


def serve(settings: WorkerSettings, store: ObjectStore, parent_pid: int | None) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10)
    reaper = BlobReaper(
        client, store, holder=f"{socket.gethostname()}:{os.getpid()}", interval_s=settings.sweep_interval_s
    )
    logger.info("blob reaper started", extra={"bucket": store.bucket, "interval_s": settings.sweep_interval_s})
    reaper.run(stop, parent_pid)
    client.close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    parent = int(args[1]) if len(args) == 2 and args[0] == "--parent" else None
    settings = load_worker_settings()
    configure_logging(settings.log_format, settings.log_level)
    if not settings.object_store_enabled:
        raise SystemExit("animegan blob reaper: ANIMEGAN_S3_BUCKET is unset; nothing to reap")
    init_store_labels()
    store = ObjectStore(settings, observe=observe_store)
    answer = probe(store)
    sys.stdout.write(f"{answer}\n")
    sys.stdout.flush()
    if answer != "ready":
        raise SystemExit(3)
    serve(settings, store, parent)


if __name__ == "__main__":
    main()
