"""Which S3 client library keeps a process leaner and faster on 1-3 MB objects: obstore against boto3.

    python -m loadtest.store_clients_bench [--objects 40] [--size-mib 2] [--rounds 2]

Starts a private SeaweedFS (``animegan.seaweedfs_server``), then runs each library in a fresh Python
process (``--one LIBRARY``), rounds alternated: import time, RSS added by the import and by the
client, PUT and GET p50 over ``--objects`` random objects, presign p50 over 200 links, and the
process's peak RSS (VmHWM). boto3 is not a dependency of the service: without it installed its runs
are reported as missing, not guessed. Prints one line per run and the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from animegan.seaweedfs_server import SeaweedFS
from loadtest.machine import cpu_model

LIBRARIES = ("obstore", "boto3")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1])


def _client(
    library: str, endpoint: str
) -> tuple[Callable[[str, bytes], Any], Callable[[str], bytes], Callable[[str], str]]:
    """put, get and presign of ``library`` against the bucket ``animegan`` (keys from AWS_* variables)."""
    if library == "boto3":
        import boto3  # type: ignore[import-not-found]
        from botocore.config import Config  # type: ignore[import-not-found]

        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=10)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)
        return (
            lambda key, data: s3.put_object(Bucket="animegan", Key=key, Body=data),
            lambda key: s3.get_object(Bucket="animegan", Key=key)["Body"].read(),
            lambda key: s3.generate_presigned_url("get_object", Params={"Bucket": "animegan", "Key": key}),
        )
    import obstore
    from obstore.store import S3Store

    options = {"allow_http": True, "connect_timeout": "2s", "timeout": "10s"}
    store = S3Store("animegan", endpoint=endpoint, region="us-east-1", client_options=options)  # type: ignore[arg-type]
    return (
        lambda key, data: obstore.put(store, key, data),
        lambda key: bytes(obstore.get(store, key).bytes()),
        lambda key: obstore.sign(store, "GET", key, timedelta(hours=1)),
    )


def run_one(library: str, endpoint: str, objects: int, size: int) -> dict[str, float]:
    """One library's figures, in this (fresh) process."""
    rss0 = _status_kib("VmRSS:")
    start = time.perf_counter()
    if library == "boto3":
        import boto3  # noqa: F401
    else:
        import obstore  # noqa: F401
    import_ms = (time.perf_counter() - start) * 1000
    rss_import = _status_kib("VmRSS:")
    put, get, sign = _client(library, endpoint)
    rss_client = _status_kib("VmRSS:")
    data = os.urandom(size)

    def p50_ms(call: Callable[[str], object], keys: list[str]) -> float:
        times = []
        for key in keys:
            began = time.perf_counter()
            call(key)
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)

    keys = [f"bench/{library}/{n}" for n in range(objects)]
    return {
        "import_ms": import_ms,
        "import_mb": (rss_import - rss0) / 1024,
        "client_mb": (rss_client - rss_import) / 1024,
        "put_ms": p50_ms(lambda key: put(key, data), keys),
        "get_ms": p50_ms(get, keys),
        "sign_ms": p50_ms(sign, [keys[n % objects] for n in range(200)]),
        "peak_mb": _status_kib("VmHWM:") / 1024,
    }


def measure(library: str, server: SeaweedFS, objects: int, size: int) -> dict[str, float] | None:
    env = {**os.environ, **server.env}
    command = [sys.executable, "-m", "loadtest.store_clients_bench", "--one", library, "--endpoint", server.endpoint]
    command += ["--objects", str(objects), "--size-mib", str(size / 2**20)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        if "No module named" in done.stderr:
            return None
        raise RuntimeError(done.stderr[-2000:])
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.store_clients_bench")
    parser.add_argument("--objects", type=int, default=40)
    parser.add_argument("--size-mib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = int(args.size_mib * 2**20)
    if args.one:
        sys.stdout.write(json.dumps(run_one(args.one, args.endpoint, args.objects, size)))
        return 0
    with open("/proc/cpuinfo") as cpuinfo:
        sys.stdout.write(
            f"CPU: {cpu_model(cpuinfo.read())}, {os.cpu_count()} CPUs; {args.objects} x {args.size_mib} MiB\n"
        )
    with tempfile.TemporaryDirectory(prefix="animegan-clients-bench-") as tmp, SeaweedFS(Path(tmp) / "data") as server:
        for _ in range(args.rounds):
            for library in LIBRARIES:
                figures = measure(library, server, args.objects, size)
                if figures is None:
                    sys.stdout.write(f"{library:8} not installed\n")
                    continue
                sys.stdout.write(
                    f"{library:8} import {figures['import_ms']:6.0f} ms +{figures['import_mb']:5.1f} MB, "
                    f"client +{figures['client_mb']:5.1f} MB; PUT p50 {figures['put_ms']:6.2f} ms, "
                    f"GET p50 {figures['get_ms']:6.2f} ms, presign p50 {figures['sign_ms']:5.2f} ms; "
                    f"peak {figures['peak_mb']:5.1f} MB\n"
                )
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
