"""The embedded service under test: ``animegan serve`` as a child process on a free port, its processes, a stop.

The runner becomes a child subreaper (Linux ``prctl``) before starting the stack, so a process the stack
daemonizes (a Redis server, say) is re-parented to the runner instead of init: it is still sampled, and
still stopped at the end. Processes are ended by pid, never by name.
"""

from __future__ import annotations

import ctypes
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import psutil

logger = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36


class StackError(RuntimeError):
    """The embedded stack did not start or did not become ready; the message says why (with its log tail)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_command(host: str, port: int, workers: int | None) -> list[str]:
    """``animegan serve`` from the same environment as this interpreter."""
    script = Path(sys.executable).parent / "animegan"
    found = str(script) if script.is_file() else shutil.which("animegan")
    base = [found] if found else [sys.executable, "-m", "animegan.cli"]
    return [*base, "serve", "--host", host, "--port", str(port)] + (["--workers", str(workers)] if workers else [])


def is_ready(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/readyz", timeout=timeout) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def readiness(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """The body of ``/readyz`` (``workers``, ``queue_depth``), or ``{}`` when it does not answer 200 with JSON."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/readyz", timeout=timeout) as response:
            body = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux only); False where not supported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def tail(path: Path, lines: int = 30) -> str:
    """The end of a log, without the access-log lines of our own readiness probes."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join([line for line in text.splitlines() if "GET /readyz" not in line][-lines:])


class EmbeddedStack:
    """``animegan serve`` for the length of a run, with a private ``TMPDIR`` and its output in ``log``."""

    def __init__(self, *, workers: int | None, log: Path, tmpdir: Path, env: dict[str, str]) -> None:
        self.workers, self.log, self.tmpdir = workers, log, tmpdir
        self.env = {**env, "TMPDIR": str(tmpdir), "TEMP": str(tmpdir), "TMP": str(tmpdir)}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = serve_command("127.0.0.1", self.port, workers)
        self.exclude: set[int] = set()  # our other children (the load generator): not part of the stack
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self.ready_after_s: float | None = None

    def start(self, ready_timeout: float) -> None:
        """Start and wait for ``/readyz`` to answer 200; raises StackError (and stops it) otherwise."""
        become_subreaper()
        self._log_handle = self.log.open("wb")
        started = time.monotonic()
        logger.info("starting the stack", extra={"command": " ".join(self.command)})
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        while not is_ready(self.url):
            if (code := self._process.poll()) is not None:
                self.stop()
                raise StackError(f"`{' '.join(self.command)}` exited with {code}:\n{tail(self.log)}")
            if time.monotonic() - started > ready_timeout:
                self.stop()
                raise StackError(f"{self.url}/readyz not 200 after {ready_timeout:.0f} s:\n{tail(self.log)}")
            time.sleep(0.5)
        self.ready_after_s = time.monotonic() - started

    def processes(self) -> list[psutil.Process]:
        """The serve process, its descendants, and orphans of theirs we adopted (as subreaper).

        An adopted orphan is recognised by the private TMPDIR in its environment: the load generator, or a
        child of ours caught between fork and exec, has the runner's environment instead.
        """
        if self._process is None:
            return []
        found: dict[int, psutil.Process] = {}
        try:
            roots = [psutil.Process(self._process.pid)]
            roots += [child for child in psutil.Process().children() if self._is_adopted(child)]
            for root in roots:
                found[root.pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = child
        except psutil.Error:
            pass
        return [process for pid, process in sorted(found.items()) if pid not in self.exclude]

    def _is_adopted(self, child: psutil.Process) -> bool:
        if self._process is None or child.pid == self._process.pid or child.pid in self.exclude:
            return False
        try:
            return child.environ().get("TMPDIR") == str(self.tmpdir)
        except psutil.Error:
            return False

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to ``animegan serve`` (it stops its own children), then SIGKILL by pid to whatever is left."""
        if self._process is None:
            return
        tree = self.processes()
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("the stack did not stop on SIGTERM; killing it", extra={"pid": self._process.pid})
        leftovers = [process for process in tree if _alive(process)]
        for process in leftovers:
            try:
                process.terminate()
            except psutil.Error:
                continue
        _gone, alive = psutil.wait_procs(leftovers, timeout=5)
        for process in alive:
            try:
                process.kill()
            except psutil.Error:
                continue
        psutil.wait_procs(alive, timeout=5)
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5)
        if self._log_handle:
            self._log_handle.close()
        self._process = None


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
