"""What a client was configured with, and the small decisions both clients make from it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import metadata

import httpx

from animegan.client.models import Job

# The gateway sends a comment line at least every 10 s on an event stream; silence for longer
# than this means the connection is dead, and polling takes over.
STREAM_SILENCE_S = 30.0


def _version() -> str:
    try:
        return metadata.version("animegan")
    except metadata.PackageNotFoundError:
        return "unknown"


USER_AGENT = f"animegan-client/{_version()}"


@dataclass(frozen=True)
class ClientOptions:
    base_url: str
    api_key: str | None = None
    timeout: float = 30.0  # seconds per HTTP request (connect, read, write)
    retry_for_s: float = 60.0  # total waiting a submit may spend retrying 429/503 answers (0: never)
    poll_interval_s: float = 1.0  # between polls when the service gives no Retry-After

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.timeout <= 0 or self.retry_for_s < 0 or self.poll_interval_s <= 0:
            raise ValueError("timeout and poll_interval_s must be positive, retry_for_s at least 0")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, application/problem+json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def events_url(self, job: Job) -> str:
        return job.links.get("events", f"{job.status_url}/events")

    def stream_read_timeout(self, remaining: float | None) -> float:
        limit = max(self.timeout, STREAM_SILENCE_S)
        return limit if remaining is None else max(0.05, min(limit, remaining))

    @staticmethod
    def is_event_stream(response: httpx.Response) -> bool:
        return response.status_code == 200 and response.headers.get("content-type", "").startswith("text/event-stream")


def deadline_after(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def remaining_s(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()
