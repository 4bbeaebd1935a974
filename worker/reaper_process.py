"""Starting and stopping this worker's blob reaper process (``python -m worker.blob_reaper``).

Kept apart from the reaper so the Celery main process, which calls these from its ``worker_init``
and ``worker_shutdown`` hooks, never imports the object store client (obstore is not fork-safe).
The start is also the worker's start-up check of the bucket: the reaper's first line is ``ready``
or the reason the worker must not start (a missing bucket, refused credentials).
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys

from worker.config import WorkerSettings

logger = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
# Python's start, the imports, and one probe (two requests, each within the store timeout).
STARTUP_S = 20.0

_process: subprocess.Popen[bytes] | None = None


def start_reaper(settings: WorkerSettings) -> subprocess.Popen[bytes] | None:
    """Start the reaper (none without ANIMEGAN_S3_BUCKET); SystemExit with one line when the bucket refuses us."""
    global _process
    if not settings.object_store_enabled:
        return None
    command = [sys.executable, "-m", "worker.blob_reaper", "--parent", str(os.getpid())]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = _first_line(process, STARTUP_S + 2 * settings.s3_timeout_s)
    process.stdout.close()
    if line != "ready":
        _end(process, STOP_GRACE_S)
        reason = line.removeprefix("refused: ") if line else f"the blob reaper exited with status {process.returncode}"
        raise SystemExit(f"animegan worker: {reason}")
    _process = process
    return process


def _first_line(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    if not ready:
        return ""
    return process.stdout.readline().decode(errors="replace").strip()


def stop_reaper(timeout_s: float = 10.0) -> None:
    """End the reaper started by ``start_reaper``: SIGTERM, then SIGKILL if it does not finish in time."""
    global _process
    process, _process = _process, None
    if process is not None:
        _end(process, timeout_s)


def _end(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_GRACE_S)
