"""The value stored under an Idempotency-Key: the job it names and the request's fingerprint."""

from __future__ import annotations

import json
from typing import Any


def encode_idempotency(job_id: str, fingerprint: str) -> str:
    return json.dumps({"job_id": job_id, "fingerprint": fingerprint})


def decode_idempotency(raw: bytes | str) -> tuple[str, str]:
    """``(job_id, fingerprint)`` of a stored value."""
    value: dict[str, Any] = json.loads(raw)
    return str(value["job_id"]), str(value["fingerprint"])
