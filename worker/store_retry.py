"""Job store calls retried while Redis or the object store is unreachable, for ANIMEGAN_STORE_RETRY_S.

Every write a task makes for its job goes through ``store_retry``: a brief outage (a Redis
restart, a store that answers late) costs a pause, not the job. Past the budget the task gives
up with ``StoreUnavailable`` and leaves the job to its lease, which hands it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from jobstore.objectstore import StoreError
from worker.runtime import Runtime

logger = logging.getLogger(__name__)

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The job store (Redis, or the object store) stayed unreachable for longer than the retry budget."""


def store_retry(runtime: Runtime, what: str, call: Callable[[], T]) -> T:
    """``call()``, retried with backoff while Redis or the object store is unreachable, for
    ANIMEGAN_STORE_RETRY_S at most."""
    deadline = time.monotonic() + runtime.settings.store_retry_s
    delay = 0.5
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError, StoreError) as exc:
            if time.monotonic() + delay > deadline:
                raise StoreUnavailable(what) from None
            logger.warning(
                "job store unreachable; retrying", extra={"during": what, "retry_in_s": delay, "error": str(exc)}
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
