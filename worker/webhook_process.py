"""Starting and stopping this worker's webhook sender process (``python -m worker.webhooks``).

Kept apart from the sender itself so the Celery main process, which calls these from its
``worker_init`` and ``worker_shutdown`` hooks, never imports the HTTP client.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from worker.config import WorkerSettings

logger = logging.getLogger(__name__)

STOP_GRACE_S = 5.0

_process: subprocess.Popen[bytes] | None = None


def start_sender(settings: WorkerSettings) -> subprocess.Popen[bytes] | None:
    """Start this worker's sender process (none without a secret: nothing could be signed)."""
    global _process
    if not settings.webhooks_enabled:
        logger.info("webhooks off: ANIMEGAN_WEBHOOK_SECRET is unset")
        return None
    command = [sys.executable, "-m", "worker.webhooks", "--parent", str(os.getpid())]
    _process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    return _process


def stop_sender(timeout_s: float = 30.0) -> None:
    """End the sender started by ``start_sender``: SIGTERM, then SIGKILL if it does not finish in time."""
    global _process
    process, _process = _process, None
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_GRACE_S)
