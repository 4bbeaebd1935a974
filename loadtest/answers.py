"""Reading the service's answers as a client: Retry-After, job timestamps, problem types, cache hits.

HTTP only (a response object with ``status_code``, ``headers``, ``json()``): no api import.
"""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any


def retry_after(response: Any, default: float) -> float:
    """Seconds the server asked us to wait (delta-seconds or HTTP-date), else ``default``."""
    value = (getattr(response, "headers", None) or {}).get("Retry-After")
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())


def server_seconds(job: dict[str, Any], start: str, end: str) -> float | None:
    """``end - start`` from two timestamps of the job record (epoch seconds or ISO 8601), if both are there."""
    stamps = []
    for key in (start, end):
        value = job.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            stamps.append(float(value))
            continue
        try:
            stamps.append(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None
    return round(stamps[1] - stamps[0], 3)


def answer(response: Any) -> str:
    """The status code, or what went wrong when there was no HTTP answer (status 0)."""
    if response.status_code:
        return str(response.status_code)
    return f"no response ({getattr(response, 'error', None)!r})"[:160]


def problem_type(response: Any) -> str:
    """The ``type`` of a problem+json body, or ``""``."""
    try:
        body = response.json()
    except (ValueError, AttributeError):
        return ""
    return str(body.get("type", "")) if isinstance(body, dict) else ""


def problem_slug(response: Any) -> str:
    """The last part of a problem's ``type`` (``client-quota``), or ``""``."""
    return problem_type(response).rstrip("/").rsplit("/", 1)[-1]


def is_deduplicated(response: Any, body: dict[str, Any]) -> bool:
    """Did the service answer this submission from its cache? (body flag or header)"""
    if body.get("deduplicated") is True or body.get("cached") is True:
        return True
    header = (response.headers.get("X-Deduplicated") or response.headers.get("X-Cache") or "").lower()
    return header in {"1", "true", "yes", "hit"}
