"""A worker whose pool child starts while Redis is away announces itself once Redis is back.

The child's first heartbeat meets a Redis that refuses connections; the client gives up after its
retries (about ten seconds). The heartbeat thread must run regardless, so that the gateway's
/readyz turns ready as soon as Redis returns, without restarting the worker. The container
version of this case runs in tests/image/test_image_stack.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# What the worker logs once the child's first beat has failed: the heartbeat thread's warning, or,
# when a beat raises in the child's start hook, Celery's report of the failed signal handler.
FIRST_BEAT_FAILED = ("heartbeat failed", "Signal handler")


def wait_for_log(log: Path, needles: tuple[str, ...], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if any(needle in text for needle in needles):
            return text
        time.sleep(0.2)
    raise AssertionError(f"none of {needles} in the worker's log within {timeout_s} s:\n{log.read_text()[-3000:]}")


def test_worker_started_while_redis_is_away_turns_ready_once_redis_is_back(
    durable_redis: Any, spawn_worker: Callable[..., Any], start_api: Callable[..., str], tmp_path: Path
) -> None:
    url = f"redis://{durable_redis.host}:{durable_redis.port}/0"
    durable_redis.kill()
    log = tmp_path / "worker.log"
    worker = spawn_worker(url, wait=False, log=log)
    wait_for_log(log, ("model loaded",), 120)
    wait_for_log(log, FIRST_BEAT_FAILED, 60)
    assert worker.poll() is None

    durable_redis.start()
    base = start_api(redis_url=url)
    deadline = time.monotonic() + 45
    status = None
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/readyz", timeout=5).status_code
        if status == 200:
            break
        time.sleep(0.5)
    assert status == 200, f"/readyz stayed {status} after Redis came back; worker log:\n{log.read_text()[-3000:]}"
