"""WorkerSettings: every knob of a Celery worker process, read once from ``ANIMEGAN_*``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, model_validator

from jobstore.settings import SharedSettings, describe_errors


class WorkerSettings(SharedSettings):
    """Settings of a worker process (``animegan worker`` / ``celery -A worker.celery_app worker``)."""

    weights_dir: Path | None = None
    cache_dir: Path | None = None
    worker_concurrency: int | None = Field(default=None, ge=1)
    threads: int | None = Field(default=None, ge=1)
    pin_cpus: bool = True
    task_soft_time_limit_s: int = Field(default=300, ge=1)
    task_time_limit_s: int = Field(default=330, ge=1)
    visibility_timeout_s: int = Field(default=3600, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    # A running job is leased for lease_s and renewed every quarter of it; a lease nobody renewed
    # (its process vanished) is handed back by the sweeper, which looks every sweep_interval_s.
    lease_s: float = Field(default=20.0, ge=1.0)
    sweep_interval_s: float = Field(default=5.0, gt=0)
    # How long a job's Redis writes are retried before the job is handed back through its lease.
    store_retry_s: float = Field(default=30.0, ge=0)
    max_memory_per_child_mb: int = Field(default=2048, ge=0)
    max_tasks_per_child: int = Field(default=0, ge=0)
    output_quality: int = Field(default=92, ge=1, le=100)
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # auto: bf16 where the CPU runs it natively (AVX512_BF16, AMX), else fp32 (inference.precision).
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    @model_validator(mode="after")
    def _check_limits(self) -> Self:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must be below task_time_limit_s")
        # A task still running when the visibility timeout passes is delivered a second time.
        if self.task_time_limit_s * 2 > self.visibility_timeout_s:
            raise ValueError("visibility_timeout_s must be at least twice task_time_limit_s")
        return self

    @property
    def concurrency(self) -> int:
        return self.worker_concurrency or available_cores()

    @property
    def threads_per_child(self) -> int:
        return self.threads or max(1, available_cores() // self.concurrency)


def available_cores() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def load_worker_settings() -> WorkerSettings:
    """Read the environment; a bad value stops the process with one line naming the variable."""
    try:
        return WorkerSettings()
    except ValidationError as exc:
        raise SystemExit(f"animegan worker: invalid configuration: {describe_errors(exc)}") from None
