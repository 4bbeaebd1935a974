"""Job ids: ``secrets.token_urlsafe(16)`` (128 random bits).

Unguessable: the id is the only capability needed to read a job.
"""

from __future__ import annotations

import re
import secrets

# token_urlsafe(16) gives 22 characters; anything else cannot be one of ours.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)


def new_job_id() -> str:
    return secrets.token_urlsafe(16)


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID_RE.match(value))
