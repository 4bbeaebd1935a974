"""The load generator's own records: ``requests.csv`` (one row per request) and ``jobs.csv`` (one per job)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any


class Records:
    """``requests.csv`` and ``jobs.csv`` in ``ANIMEGAN_LOADTEST_OUT`` (nothing when unset)."""

    REQUEST_FIELDS = (
        "t", "method", "name", "status", "response_ms", "bytes", "ok", "retry_after", "problem", "tenant", "error",
    )  # fmt: skip
    JOB_FIELDS = (
        "submitted_at", "finished_at", "latency_s", "server_latency_s", "queue_s", "inference_s", "service_s",
        "waited_s", "outcome", "detail", "scenario", "tenant", "users", "width", "height", "upload_bytes",
        "result_bytes", "deduplicated", "shed_503", "shed_429", "job_id",
    )  # fmt: skip

    def __init__(self) -> None:
        self._writers: dict[str, Any] = {}
        self._files: list[io.TextIOWrapper] = []

    def open(self, folder: str) -> None:
        for kind, fields in (("requests", self.REQUEST_FIELDS), ("jobs", self.JOB_FIELDS)):
            handle = open(Path(folder) / f"{kind}.csv", "w", newline="", buffering=1)  # noqa: SIM115
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            self._writers[kind] = writer
            self._files.append(handle)

    def write(self, kind: str, row: dict[str, Any]) -> None:
        if kind in self._writers:
            self._writers[kind].writerow(row)

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        self._files.clear()
        self._writers.clear()


RECORDS = Records()
