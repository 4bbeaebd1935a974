"""Leases: a running job belongs to the live process computing it, for as long as it renews.

The claim leases the job for ``lease_s``; a daemon thread renews it every quarter of that while
the job runs. A process that vanishes (SIGKILL, OOM, a lost machine) stops renewing, and the
sweeper (``worker.sweeper``) hands the job back once the lease has passed. A renewal that finds
the job no longer ours (it was handed back meanwhile) stops renewing and says so in the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from jobstore.queue import QueueScripts, renew_call
from jobstore.records import now

logger = logging.getLogger(__name__)


@contextmanager
def held(client: redis.Redis, scripts: QueueScripts, job_id: str, holder: str, lease_s: float) -> Iterator[None]:
    """Renew the lease of ``job_id`` for ``holder`` until the block ends."""
    stop = threading.Event()

    def renew_forever() -> None:
        while not stop.wait(lease_s / 4):
            try:
                keys, args = renew_call(job_id, holder, now() + lease_s)
                if not scripts.renew(keys=keys, args=args, client=client):
                    logger.warning("lease lost: the job was handed back while running", extra={"job_id": job_id})
                    return
            except redis.RedisError:
                # Kept trying: a lease outlives a short outage (renewals come four times per lease).
                logger.warning("could not renew the lease; retrying", extra={"job_id": job_id})

    thread = threading.Thread(target=renew_forever, name="animegan-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
