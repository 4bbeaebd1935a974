"""Counting the temporary files the service creates during a load run.

Three views, because a plain before/after listing of /tmp on a shared machine also catches other programs:

- the embedded stack gets a private ``TMPDIR``: whatever appears in it during the run is the stack's;
- the shared temp roots (``tempfile.gettempdir()``, ``/dev/shm``) are listed before and after;
- every sampling tick reads ``/proc/<pid>/fd`` of the stack's processes: a file under a temp root that the
  stack holds open is the stack's, even when it is already unlinked (``(deleted)``, e.g. a spooled upload).

A new file in a shared root that no stack process was seen holding is reported as unattributed, not counted.
The runner's own report folder is excluded everywhere. Files in the stack's ``PROMETHEUS_MULTIPROC_DIR`` (the
metrics of prefork processes: one small memory-mapped file per process and metric kind, on /dev/shm when
there is one) are listed apart: they belong to processes, not to requests.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

DELETED = " (deleted)"
# Bounds the listing of a crowded /tmp: past this many entries the snapshot stops (and says so).
MAX_ENTRIES = 200_000


def shared_roots() -> list[Path]:
    """The temp roots every process on the host may write to."""
    roots = [Path(tempfile.gettempdir())]
    if Path("/dev/shm").is_dir():
        roots.append(Path("/dev/shm"))
    return roots


def list_files(root: Path, exclude: tuple[Path, ...] = ()) -> tuple[set[str], bool]:
    """Paths of the files below ``root`` (not following links), skipping ``exclude``; and whether it was cut short."""
    found: set[str] = set()
    pending = [root]
    excluded = {str(path) for path in exclude}
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:  # vanished or unreadable: another program's business
            continue
        for entry in entries:
            if entry.path in excluded:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                else:
                    found.add(entry.path)
            except OSError:
                continue
            if len(found) >= MAX_ENTRIES:
                return found, True
    return found, False


def multiprocess_dirs(processes: list[psutil.Process]) -> set[str]:
    """The ``PROMETHEUS_MULTIPROC_DIR`` values in these processes' environments."""
    found = set()
    for process in processes:
        try:
            value = process.environ().get("PROMETHEUS_MULTIPROC_DIR")
        except psutil.Error:
            continue
        if value:
            found.add(str(Path(value)).rstrip("/") + "/")
    return found


def open_temp_files(
    processes: list[psutil.Process], roots: list[Path], exclude: tuple[Path, ...] = ()
) -> dict[str, int]:
    """Files under ``roots`` (not ``exclude``) these processes hold open: link target (may end ``(deleted)``) -> pid."""
    prefixes = tuple(str(root).rstrip("/") + "/" for root in roots)
    skipped = tuple(str(path).rstrip("/") + "/" for path in exclude)
    held: dict[str, int] = {}
    for process in processes:
        fd_dir = f"/proc/{process.pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            if fd in ("0", "1", "2"):  # standard streams are whatever the launcher chose (a log, a terminal)
                continue
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith(prefixes) and not target.startswith(skipped):
                held.setdefault(target, process.pid)
    return held


@dataclass
class TempReport:
    """What the run left behind or held open in temp folders."""

    stack_files: list[str] = field(default_factory=list)
    metrics_files: list[str] = field(default_factory=list)
    unattributed: list[str] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def count(self) -> int:
        return len(self.stack_files)


class TempWatch:
    """Baseline, per-tick observation and final count of temp files (see the module docstring)."""

    def __init__(self, *, private: Path | None, exclude: tuple[Path, ...] = ()) -> None:
        self.private = private
        self.shared = [root for root in shared_roots() if private is None or root != private]
        self.reported = tuple(exclude)  # the runner's own folders: never counted, open or not
        self.exclude = self.reported + ((private,) if private else ())
        self._before: set[str] = set()
        self._private_before: set[str] = set()
        self._held_before: set[str] = set()
        self._seen_private: set[str] = set()
        self._seen_held: dict[str, int] = {}
        self._truncated = False
        self._metrics_dirs: set[str] = set()

    @property
    def roots(self) -> list[Path]:
        return self.shared + ([self.private] if self.private else [])

    def _list_shared(self) -> set[str]:
        files: set[str] = set()
        for root in self.shared:
            found, cut = list_files(root, self.exclude)
            files |= found
            self._truncated |= cut
        return files

    def _list_private(self) -> set[str]:
        return list_files(self.private, self.exclude)[0] if self.private else set()

    def baseline(self, processes: list[psutil.Process]) -> None:
        """Call once the stack is ready and before the load starts: what is there now is not counted."""
        self._before = self._list_shared()
        self._private_before = self._list_private()
        held = open_temp_files(processes, self.roots, self.reported)
        self._held_before = {path.removesuffix(DELETED) for path in held}
        self._metrics_dirs = multiprocess_dirs(processes)

    def observe(self, processes: list[psutil.Process]) -> None:
        """Call every sampling tick: catches files that live for a moment only."""
        for target, pid in open_temp_files(processes, self.roots, self.reported).items():
            path = target.removesuffix(DELETED)
            if path not in self._held_before:
                self._seen_held.setdefault(path, pid)
        self._seen_private |= self._list_private() - self._private_before

    def finish(self, processes: list[psutil.Process]) -> TempReport:
        """Call after the load, before the stack stops."""
        self.observe(processes)
        new_shared = self._list_shared() - self._before
        stack = self._seen_private | set(self._seen_held)
        metrics = {path for path in stack | new_shared if path.startswith(tuple(self._metrics_dirs))}
        return TempReport(
            stack_files=sorted(stack - metrics),
            metrics_files=sorted(metrics),
            unattributed=sorted(new_shared - stack - metrics),
            roots=[str(root) for root in self.roots],
            truncated=self._truncated,
        )
