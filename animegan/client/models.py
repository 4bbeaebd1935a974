"""The service's JSON as typed values: a ``Job`` and its parts, parsed once and never mutated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
class Job:
    """One job as ``GET /jobs/{id}`` describes it; ``raw`` is the whole body (fields added later too)."""

    id: str
    status: str  # queued | running | succeeded | failed
    style: str | None = None
    queue_position: int | None = None
    mode: str | None = None
    output: JobOutput = field(default_factory=lambda: JobOutput(format=None))
    error: JobError | None = None
    links: Mapping[str, str] = field(default_factory=dict)
    deduplicated: bool = False
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
            links={str(k): str(v) for k, v in links.items()},
            deduplicated=bool(body.get("deduplicated", False)),
            raw=dict(body),
        )


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None
