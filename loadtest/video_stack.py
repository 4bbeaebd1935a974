"""The service the video benchmarks measure: a private Redis (and SeaweedFS) and the production gateway.

Shared by ``loadtest.video_bench`` and ``loadtest.video_worker_bench``: the environment both give the
gateway and the workers (the real weights, one style, queue limits wide enough for long clips).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from animegan.redis_server import RedisServer, free_port
from animegan.seaweedfs_server import SeaweedFS
from loadtest.storage_bench import start_gateway


def service_env(**extra: str) -> dict[str, str]:
    """This environment less its ANIMEGAN_, PROMETHEUS_ and AWS_ variables, plus the benchmarks' and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMEGAN_", "PROMETHEUS_", "AWS_"))}
    weights = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
    env.update(ANIMEGAN_LOG_LEVEL="WARNING", ANIMEGAN_STYLES="hayao", ANIMEGAN_DEFAULT_STYLE="hayao")
    env.update(ANIMEGAN_WEIGHTS_DIR=str(weights), ANIMEGAN_MAX_QUEUE_DEPTH="200", ANIMEGAN_MAX_QUEUED_PER_CLIENT="200")
    env.update(extra)
    return env


@contextmanager
def gateway(env: dict[str, str], workdir: Path, store: str) -> Iterator[tuple[str, int, str]]:
    """A private Redis (and SeaweedFS for ``s3``) and the production gateway; yields its URL, pid and Redis URL."""
    with RedisServer() as server:
        seaweed = None
        try:
            env = {**env, "ANIMEGAN_REDIS_URL": server.url}
            if store == "s3":
                seaweed = SeaweedFS(Path(tempfile.mkdtemp(dir=workdir)))
                seaweed.start()
                env.update(ANIMEGAN_S3_BUCKET="animegan", ANIMEGAN_S3_ENDPOINT_URL=seaweed.endpoint, **seaweed.env)
            port = free_port()
            process = start_gateway(env, port, workdir / f"gateway-{store}.log")
            try:
                yield f"http://127.0.0.1:{port}", process.pid, server.url
            finally:
                process.terminate()
                process.wait(30)
        finally:
            if seaweed is not None:
                seaweed.stop()
