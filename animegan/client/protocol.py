"""What both clients say and understand, without doing any I/O (the sync and async clients share it).

Building the ``POST /stylize`` form, reading answers into a ``Job`` or an ``ApiError``, the
Retry-After header, the submit retry budget, and Server-Sent Events decoding. Kept apart from the
transports, as httpx keeps its models apart from its clients, so a batch submission can reuse
every piece.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

from animegan.client.errors import ApiError
from animegan.client.models import Batch, Job

# bytes, a path, or a file opened in binary mode.
ImageInput = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]
# "x,y,w,h" or (x, y, w, h): a square of the upright photo, for portrait mode.
CropInput = str | tuple[int, int, int, int]
# A job or a batch: what ``wait`` and ``wait_batch`` follow.
State = TypeVar("State", Job, Batch)
RETRYABLE_SUBMIT_STATUSES = frozenset({429, 503})
# Without a Retry-After, retries wait 1, 2, 4 ... seconds, never more than this.
MAX_BACKOFF_S = 30.0


def read_image(image: ImageInput) -> tuple[str, bytes]:
    """The upload's file name and bytes (a file is read from where it stands to its end)."""
    if isinstance(image, bytes | bytearray | memoryview):
        return "image", bytes(image)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        return path.name, path.read_bytes()
    name = getattr(image, "name", None)
    data = image.read()
    if not isinstance(data, bytes):
        raise TypeError("the image file must be opened in binary mode ('rb')")
    return (Path(name).name if isinstance(name, str) else "image"), data


def stylize_form(
    image: ImageInput,
    *,
    style: str | None = None,
    format: str | None = None,
    mode: str | None = None,
    crop: CropInput | None = None,
) -> tuple[dict[str, tuple[str, bytes, str]], dict[str, str]]:
    """The ``files`` and ``data`` of a ``POST /stylize`` (the service judges the image by its bytes)."""
    filename, data = read_image(image)
    fields = {"style": style, "format": format, "mode": mode, "crop": _crop_text(crop)}
    return {"image": (filename, data, "application/octet-stream")}, {k: v for k, v in fields.items() if v is not None}


# A clip: its bytes, a path to it, or a file opened in binary mode (sent from where it stands).
VideoInput = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


@contextlib.contextmanager
def video_form(
    clip: VideoInput, *, style: str | None = None, callback_url: str | None = None
) -> Iterator[tuple[dict[str, tuple[str, Any, str]], dict[str, str]]]:
    """The ``files`` and ``data`` of a ``POST /videos``. A path is opened for the request and streamed from
    the file (never read whole); a file is streamed from where it stands, rewound there for each use."""
    fields = {k: v for k, v in {"style": style, "callback_url": callback_url}.items() if v is not None}
    if isinstance(clip, bytes | bytearray | memoryview):
        yield {"video": ("clip", bytes(clip), "application/octet-stream")}, fields
    elif isinstance(clip, str | os.PathLike):
        path = Path(clip)
        with path.open("rb") as file:
            yield {"video": (path.name, file, "application/octet-stream")}, fields
    else:
        start = clip.tell()
        name = getattr(clip, "name", None)
        yield (
            {"video": (Path(name).name if isinstance(name, str) else "clip", clip, "application/octet-stream")},
            fields,
        )
        clip.seek(start)


def batch_form(
    images: Sequence[ImageInput],
    *,
    style: str | None = None,
    format: str | None = None,
    mode: str | None = None,
    crop: CropInput | None = None,
    callback_url: str | None = None,
) -> tuple[list[tuple[str, tuple[str, bytes, str]]], dict[str, str]]:
    """The ``files`` and ``data`` of a ``POST /batches``: one ``image`` part per image, in order."""
    if not images:
        raise ValueError("a batch needs at least one image")
    files = [("image", (*read_image(image), "application/octet-stream")) for image in images]
    fields = {"style": style, "format": format, "mode": mode, "crop": _crop_text(crop), "callback_url": callback_url}
    return files, {k: v for k, v in fields.items() if v is not None}


def _crop_text(crop: CropInput | None) -> str | None:
    if crop is None or isinstance(crop, str):
        return crop
    return ",".join(str(int(v)) for v in crop)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def api_error(response: httpx.Response) -> ApiError:
    """The error an answer carries: its problem document, or a stand-in for a body that is not one."""
    problem: dict[str, Any] | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "title" in body:
        problem = body
    if problem is None:
        detail = response.text[:200].strip() if response.text else ""
        problem = {"type": "about:blank", "title": response.reason_phrase, "status": response.status_code}
        problem["detail"] = detail or response.reason_phrase
    return ApiError(response.status_code, problem, retry_after(response.headers))


def job_of(response: httpx.Response) -> Job:
    """The job a 2xx answer describes; anything else raises its ApiError."""
    return _state_of(response, Job.from_json)


def batch_of(response: httpx.Response) -> Batch:
    """The batch a 2xx answer describes; anything else raises its ApiError."""
    return _state_of(response, Batch.from_json)


def _state_of(response: httpx.Response, parse: Callable[[dict[str, Any]], State]) -> State:
    if not response.is_success:
        raise api_error(response)
    try:
        return parse(response.json())
    except ValueError as exc:
        problem = {"type": "about:blank", "title": "Unexpected answer", "status": response.status_code}
        raise ApiError(response.status_code, {**problem, "detail": str(exc)}) from None


# A link this close to its expiry is not used: the download might start after it.
DOWNLOAD_MARGIN_S = 5.0


def download_link(job: Job, now: datetime | None = None) -> str | None:
    """The job's presigned result link while it stays valid a few more seconds, else None (use the gateway)."""
    url, expires = job.download_url, job.download_expires_at
    if not job.succeeded or url is None or not url.startswith(("https://", "http://")):
        return None
    if expires is not None:
        at = now or datetime.now(UTC)
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        if (expires - at).total_seconds() < DOWNLOAD_MARGIN_S:
            return None
    return url


def content_of(response: httpx.Response) -> bytes:
    """A result's bytes from a 2xx answer; anything else raises its ApiError."""
    if not response.is_success:
        raise api_error(response)
    return response.content


@dataclass
class RetryBudget:
    """How long a submission keeps retrying 429/503 answers: at most ``total_s`` of waiting in all."""

    total_s: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    attempts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def delay_before_retry(self, error: ApiError) -> float | None:
        """Seconds to wait before trying again, or None: do not retry (raise ``error``)."""
        if error.status not in RETRYABLE_SUBMIT_STATUSES:
            return None
        self.attempts += 1
        wait = error.retry_after if error.retry_after is not None else min(MAX_BACKOFF_S, 2.0 ** (self.attempts - 1))
        if self.clock() - self.started + wait > self.total_s:
            return None
        return wait


def poll_delay(response: httpx.Response, default_s: float) -> float:
    """How long to wait before the next poll: the service's Retry-After hint, else ``default_s``."""
    hint = retry_after(response.headers)
    return default_s if hint is None else max(0.05, hint)


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str


class EventDecoder:
    """Server-Sent Events, one line at a time (the text/event-stream format of the HTML standard)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> ServerSentEvent | None:
        """Feed one line without its line ending; returns an event when a blank line completes one."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = ServerSentEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def state_of_event(event: ServerSentEvent, parse: Callable[[dict[str, Any]], State]) -> State | None:
    """The state an event of ``/jobs/{id}/events`` or ``/batches/{id}/events`` carries (``parse``
    reads its body); ``expired`` raises its 404 problem, an undecodable event is None."""
    try:
        body = json.loads(event.data)
    except ValueError:
        return None
    if event.event == "expired" and isinstance(body, dict):
        raise ApiError(int(body.get("status", 404)), body)
    try:
        return parse(body) if isinstance(body, dict) else None
    except ValueError:
        return None


def job_of_event(event: ServerSentEvent) -> Job | None:
    """The job state an event of ``GET /jobs/{id}/events`` carries; ``expired`` raises its 404 problem."""
    return state_of_event(event, Job.from_json)


def batch_of_event(event: ServerSentEvent) -> Batch | None:
    """The batch state an event of ``GET /batches/{id}/events`` carries; ``expired`` raises its 404 problem."""
    return state_of_event(event, Batch.from_json)
