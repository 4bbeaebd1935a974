"""The service's JSON as typed values: a ``Job`` and its parts, parsed once and never mutated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"succeeded", "failed"})


@dataclass(frozen=True)
class JobOutput:
    format: str | None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class JobError:
    type: str
    title: str
    detail: str


@dataclass(frozen=True)
class VideoProgress:
    frames_done: int
    frames_total: int


@dataclass(frozen=True)
class VideoSegment:
    """About two seconds of a clip: its frames, its state and the worker process that ran it (host:pid)."""

    index: int
    first_frame: int
    frames: int
    status: str
    worker: str | None = None


@dataclass(frozen=True)
class Job:
    """One job as ``GET /jobs/{id}`` describes it; ``raw`` is the whole body (fields added later too).

    ``kind`` is ``photo`` or ``video``; a video's job has ``progress`` and ``segments`` too.
    """

    id: str
    status: str  # queued | running | succeeded | failed
    style: str | None = None
    queue_position: int | None = None
    mode: str | None = None
    output: JobOutput = field(default_factory=lambda: JobOutput(format=None))
    error: JobError | None = None
    links: Mapping[str, str] = field(default_factory=dict)
    deduplicated: bool = False
    kind: str = "photo"
    progress: VideoProgress | None = None
    segments: tuple[VideoSegment, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def status_url(self) -> str:
        return self.links.get("status", f"/jobs/{self.id}")

    @property
    def result_url(self) -> str:
        return self.links.get("result", f"/jobs/{self.id}/result")

    @property
    def download_url(self) -> str | None:
        """The result's presigned link in the object store (``links.download``), where the service has one."""
        return self.links.get("download")

    @property
    def download_expires_at(self) -> datetime | None:
        """When ``download_url`` stops working (``links.download_expires_at``)."""
        value = self.links.get("download_expires_at")
        try:
            return None if value is None else datetime.fromisoformat(value)
        except ValueError:
            return None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Job:
        """Parse a job body; raises ValueError when it has no ``id`` or ``status``."""
        if not isinstance(body.get("id"), str) or not isinstance(body.get("status"), str):
            raise ValueError("not a job: the body has no id and status")
        output = _mapping(body.get("output")) or {}
        error = _mapping(body.get("error"))
        links = _mapping(body.get("links")) or {}
        return cls(
            id=body["id"],
            status=body["status"],
            style=body.get("style"),
            queue_position=body.get("queue_position"),
            mode=body.get("mode"),
            output=JobOutput(
                format=output.get("format"),
                width=output.get("width"),
                height=output.get("height"),
                bytes=output.get("bytes"),
            ),
            error=None
            if error is None
            else JobError(
                type=str(error.get("type", "")), title=str(error.get("title", "")), detail=str(error.get("detail", ""))
            ),
            links={str(k): str(v) for k, v in links.items() if v is not None},
            deduplicated=bool(body.get("deduplicated", False)),
            kind=str(body.get("kind", "photo")),
            progress=_progress(_mapping(body.get("progress"))),
            segments=tuple(_segment(s) for s in body.get("segments") or () if isinstance(s, Mapping)),
            raw=dict(body),
        )


def _progress(value: Mapping[str, Any] | None) -> VideoProgress | None:
    if value is None:
        return None
    return VideoProgress(int(value.get("frames_done", 0)), int(value.get("frames_total", 0)))


def _segment(value: Mapping[str, Any]) -> VideoSegment:
    worker = value.get("worker")
    return VideoSegment(
        index=int(value.get("index", 0)),
        first_frame=int(value.get("first_frame", 0)),
        frames=int(value.get("frames", 0)),
        status=str(value.get("status", "")),
        worker=None if worker is None else str(worker),
    )


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch: its ``job``, or the ``problem`` (type, title, status, detail) that refused it."""

    index: int
    filename: str
    job: Job | None = None
    problem: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Batch:
    """A batch as ``GET /batches/{id}`` describes it; ``counts`` per state (queued, running, succeeded,
    failed, rejected, expired); ``raw`` is the whole body."""

    id: str
    status: str  # in_progress | completed
    items: tuple[BatchItem, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status == "completed"

    @property
    def jobs(self) -> list[Job]:
        """The jobs of the files that were accepted, in file order."""
        return [item.job for item in self.items if item.job is not None]

    @property
    def status_url(self) -> str:
        return self.links.get("status", f"/batches/{self.id}")

    @property
    def events_url(self) -> str:
        return self.links.get("events", f"{self.status_url}/events")

    @property
    def results_url(self) -> str:
        return self.links.get("results", f"{self.status_url}/results.zip")

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Batch:
        """Parse a batch body; raises ValueError when it has no ``id``, ``status`` and ``jobs``."""
        entries = body.get("jobs")
        if (
            not isinstance(body.get("id"), str)
            or not isinstance(body.get("status"), str)
            or not isinstance(entries, list)
        ):
            raise ValueError("not a batch: the body has no id, status and jobs")
        items: list[BatchItem] = []
        for entry in entries:
            entry = _mapping(entry) or {}
            job = _mapping(entry.get("job"))
            items.append(
                BatchItem(
                    index=int(entry.get("index", len(items))),
                    filename=str(entry.get("filename", "")),
                    job=None if job is None else Job.from_json(job),
                    problem=_mapping(entry.get("problem")),
                )
            )
        counts = _mapping(body.get("counts")) or {}
        links = _mapping(body.get("links")) or {}
        return cls(
            id=body["id"],
            status=body["status"],
            items=tuple(items),
            counts={str(k): int(v) for k, v in counts.items()},
            links={str(k): str(v) for k, v in links.items()},
            raw=dict(body),
        )
