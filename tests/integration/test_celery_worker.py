"""Process facts of the real worker: the model lives in the pool child, never in the parent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil
import redis

from worker import contract
from worker.config import available_cores

RUNTIME_LIBRARIES = ("libtorch", "onnxruntime")


def _mapped(pid: int) -> set[str]:
    paths = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6:
            paths.add(parts[5])
    return {p for p in paths if any(lib in p for lib in RUNTIME_LIBRARIES)}


def test_the_model_is_loaded_in_the_pool_child_not_in_the_parent(
    celery_worker: subprocess.Popen[bytes], worker_redis_url: str
) -> None:
    with redis.Redis.from_url(worker_redis_url) as client:
        beats = contract.live_heartbeats(client.hgetall(contract.WORKERS_KEY))  # type: ignore[arg-type]
    main = psutil.Process(celery_worker.pid)
    children = {c.pid for c in main.children(recursive=True)}
    assert len(beats) == 1
    beat = beats[0]
    assert beat.pid in children  # the heartbeat comes from a pool child, after its model loaded
    assert beat.styles == ["hayao"]
    assert beat.threads == available_cores()  # one child: it gets every core
    assert _mapped(beat.pid), "the child should have the inference runtime mapped"
    assert not _mapped(celery_worker.pid), "the parent must never load the inference runtime"


def test_one_child_per_core_is_not_pinned_when_there_are_fewer_children(
    celery_worker: subprocess.Popen[bytes], worker_redis_url: str
) -> None:
    with redis.Redis.from_url(worker_redis_url) as client:
        beat = contract.live_heartbeats(client.hgetall(contract.WORKERS_KEY))[0]  # type: ignore[arg-type]
    assert os.sched_getaffinity(beat.pid) == os.sched_getaffinity(celery_worker.pid)
