"""Where the images live, measured: the gateway's RSS and submit latency, and Redis ``used_memory``, for
N queued 1024-px jobs with images in Redis and with images in an S3 store (SeaweedFS).

    python -m loadtest.storage_bench [--jobs 100] [--rounds 2]

Each run starts a private Redis, for the store runs a private SeaweedFS (``animegan.seaweedfs_server``,
the dev extra's ``weed``), and the production gateway command (``animegan.serve.api_command``) with no
worker, so every job stays queued: its input is what the store holds. It submits ``--jobs`` distinct
generated photos at 1536x1024 (the gateway downscales them to 1024x683, 2.1 MB of RGB each), one at a
time, then reads Redis's ``used_memory`` and the gateway's RSS and peak RSS (``VmHWM``). Runs
alternate (redis, s3, redis, s3, ...) so a busy machine weighs on both alike. Prints one line per run,
then the medians, with the CPU. Nothing is written to disk but SeaweedFS's own data folder (a
temporary directory, removed at the end).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import redis

from animegan.redis_server import RedisServer, free_port
from animegan.seaweedfs_server import SeaweedFS
from animegan.serve import api_command
from loadtest.images import encode_jpeg, stamp, synthetic_photo
from loadtest.machine import cpu_model

SIDE = (1536, 1024)


@dataclass(frozen=True)
class Run:
    store: str
    jobs: int
    p50_ms: float
    p95_ms: float
    rss_mb: float
    peak_rss_mb: float
    redis_bytes: int

    def line(self) -> str:
        return (
            f"{self.store:5}  jobs {self.jobs}  submit p50 {self.p50_ms:6.1f} ms  p95 {self.p95_ms:6.1f} ms  "
            f"gateway RSS {self.rss_mb:5.1f} MB (peak {self.peak_rss_mb:5.1f})  "
            f"Redis used_memory +{self.redis_bytes / 1e6:7.2f} MB ({self.redis_bytes / self.jobs / 1024:7.1f} KiB/job)"
        )


def uploads(count: int, seed: int) -> list[bytes]:
    """``count`` different JPEG photos (distinct pixels: none is answered from another's job)."""
    base = synthetic_photo(seed, SIDE)
    rng = random.Random(seed)
    return [encode_jpeg(stamp(base.copy(), rng)) for _ in range(count)]


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def start_gateway(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            api_command("127.0.0.1", port), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the gateway did not answer; see {log}")


def measure(store: str, bodies: list[bytes], workdir: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMEGAN_", "PROMETHEUS_", "AWS_"))}
    limit = str(len(bodies) + 10)
    env.update(ANIMEGAN_MAX_QUEUE_DEPTH=limit, ANIMEGAN_MAX_QUEUED_PER_CLIENT=limit, ANIMEGAN_LOG_LEVEL="WARNING")
    seaweed = None
    with RedisServer() as server:
        env["ANIMEGAN_REDIS_URL"] = server.url
        try:
            if store == "s3":
                seaweed = SeaweedFS(Path(tempfile.mkdtemp(dir=workdir)))
                seaweed.start()
                env.update(ANIMEGAN_S3_BUCKET="animegan", ANIMEGAN_S3_ENDPOINT_URL=seaweed.endpoint, **seaweed.env)
            port = free_port()
            gateway = start_gateway(env, port, workdir / f"gateway-{store}.log")
            try:
                return submit_all(store, bodies, port, gateway.pid, server.url)
            finally:
                gateway.terminate()
                gateway.wait(20)
        finally:
            if seaweed is not None:
                seaweed.stop()


def submit_all(store: str, bodies: list[bytes], port: int, pid: int, redis_url: str) -> Run:
    client = redis.Redis.from_url(redis_url)
    before = int(client.info("memory")["used_memory"])
    latencies = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        for body in bodies:
            start = time.perf_counter()
            answer = http.post("/stylize", files={"image": ("photo.jpg", body, "image/jpeg")})
            latencies.append((time.perf_counter() - start) * 1000)
            if answer.status_code != 202:
                raise RuntimeError(f"submit answered {answer.status_code}: {answer.text[:300]}")
    after = int(client.info("memory")["used_memory"])
    client.close()
    latencies.sort()
    return Run(
        store=store,
        jobs=len(bodies),
        p50_ms=statistics.median(latencies),
        p95_ms=latencies[int(0.95 * (len(latencies) - 1))],
        rss_mb=psutil.Process(pid).memory_info().rss / 2**20,
        peak_rss_mb=peak_rss_mb(pid),
        redis_bytes=after - before,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.storage_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="queued jobs per run (default 100)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each store, alternated (default 2)")
    args = parser.parse_args(argv)
    with open("/proc/cpuinfo") as cpuinfo:
        info = cpuinfo.read()
    family = next((x.split(":")[1].strip() for x in info.splitlines() if x.startswith("cpu family")), "?")
    cpu = f"{cpu_model(info)} (family {family})"
    sys.stdout.write(f"CPU: {cpu}, {os.cpu_count()} CPUs; {args.jobs} jobs of {SIDE[0]}x{SIDE[1]} JPEG per run\n")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="animegan-storage-bench-") as tmp:
        for round_ in range(args.rounds):
            bodies = uploads(args.jobs, seed=round_)
            for store in ("redis", "s3"):
                runs.append(measure(store, bodies, Path(tmp)))
                sys.stdout.write(runs[-1].line() + "\n")
                sys.stdout.flush()
    for store in ("redis", "s3"):
        mine = [r for r in runs if r.store == store]
        median = Run(
            store=store,
            jobs=args.jobs,
            p50_ms=statistics.median(r.p50_ms for r in mine),
            p95_ms=statistics.median(r.p95_ms for r in mine),
            rss_mb=statistics.median(r.rss_mb for r in mine),
            peak_rss_mb=statistics.median(r.peak_rss_mb for r in mine),
            redis_bytes=int(statistics.median(r.redis_bytes for r in mine)),
        )
        sys.stdout.write("median " + median.line() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
