"""WorkerSettings: every knob of a Celery worker process, read once from ``ANIMEGAN_*``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode

from jobstore.settings import SharedSettings, describe_errors
from jobstore.webhook_settings import WebhookSettings

# Seconds before each delivery attempt, counted from the previous one: six tries over about an hour.
DEFAULT_WEBHOOK_RETRY_SCHEDULE_S = [0.0, 30.0, 120.0, 480.0, 1200.0, 1800.0]


class WorkerSettings(SharedSettings, WebhookSettings):
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
    # auto: bf16 where the CPU runs it natively (AVX512_BF16, AMX), else int8 where it has int8
    # dot-product units (VNNI, AMX-INT8), else fp32 (inference.precision).
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    # Webhook sender (worker/webhooks.py): one per worker, in a process of its own.
    webhook_retry_schedule_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_RETRY_SCHEDULE_S)
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_concurrency: int = Field(default=4, ge=1, le=64)
    webhook_poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    webhook_keep_s: int = Field(default=86400, ge=1)

    @field_validator("webhook_retry_schedule_s", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return [float(s) for s in value.split(",") if s.strip()]
            except ValueError:
                raise ValueError(f"{value!r} is not a comma-separated list of seconds (e.g. 0,30,120)") from None
        return value

    @field_validator("webhook_retry_schedule_s", mode="after")
    @classmethod
    def _check_schedule(cls, value: list[float]) -> list[float]:
        if not 1 <= len(value) <= 20 or any(not 0 <= s <= 86400 for s in value):
            raise ValueError("give 1 to 20 comma-separated delays in seconds, each 0 to 86400 (e.g. 0,30,120)")
        return value

    @model_validator(mode="after")
    def _check_limits(self) -> Self:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must be below task_time_limit_s")
        # A task still running when the visibility timeout passes is delivered a second time.
        if self.task_time_limit_s * 2 > self.visibility_timeout_s:
            raise ValueError("visibility_timeout_s must be at least twice task_time_limit_s")
        return self

    @property
    def webhook_lease_s(self) -> float:
        """How long a claimed delivery is held: one resolution and one POST, with room to record it."""
        return self.webhook_resolve_timeout_s + self.webhook_timeout_s + 30.0

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
