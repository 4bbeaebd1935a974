"""The wall clock of the job store: every timestamp in a record is ``time.time()`` seconds."""

from __future__ import annotations

import time


def now() -> float:
    return time.time()
