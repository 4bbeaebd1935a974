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
# Where the kernel's cgroup hierarchies are mounted, and which cgroups this process is in.
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_MEMBERSHIP = Path("/proc/self/cgroup")


class WorkerSettings(SharedSettings, WebhookSettings):
    """Settings of a worker process (``animegan worker`` / ``celery -A worker.celery_app worker``)."""

    weights_dir: Path | None = None
    """Directory with `<style>.pt` files (offline installs), searched before the cache.
    `animegan serve --weights-dir` sets it."""
    cache_dir: Path | None = None
    """Where `animegan weights fetch` stores weights (`<dir>/weights/<style>.pt`). Unset: the user cache
    directory (`~/.cache/animegan` on Linux)."""
    worker_concurrency: int | None = Field(default=None, ge=1)
    """Prefork children; each holds one generator per style. Unset: one per CPU core."""
    threads: int | None = Field(default=None, ge=1)
    """Inference threads per child. Unset: cores ÷ concurrency, where cores are the CPU affinity set
    capped by the process's cgroup CPU quota (v2 `cpu.max`, or v1 `cpu.cfs_quota_us` ÷
    `cpu.cfs_period_us`; the smallest of its cgroup and their parents), rounded up."""
    pin_cpus: bool = True
    """When children equal cores, pin each child to its own core (unpinned single-thread children can
    share a core and halve throughput)."""
    task_soft_time_limit_s: int = Field(default=300, ge=1)
    """A job running longer fails with `inference-timeout`."""
    task_time_limit_s: int = Field(default=330, ge=1)
    """Hard limit: the child is killed and replaced, the job fails with `inference-timeout`. Must exceed
    the soft limit."""
    visibility_timeout_s: int = Field(default=3600, ge=1)
    """Seconds before Redis redelivers an unacknowledged job. Must be at least twice the hard limit, so a
    running job is never handed to a second worker."""
    max_attempts: int = Field(default=3, ge=1)
    """Runs of one job (a job whose worker died is handed back and run again) before it fails with
    `worker-lost`, so an input that kills workers cannot loop."""
    # A running job is leased for lease_s and renewed every quarter of it; a lease nobody renewed
    # (its process vanished) is handed back by the sweeper, which looks every sweep_interval_s.
    lease_s: float = Field(default=20.0, ge=1.0)
    """Seconds a running job is leased to its worker process, renewed every quarter of it; a lease
    nobody renews (the process vanished) is handed back by the sweeper."""
    sweep_interval_s: float = Field(default=5.0, gt=0)
    """Seconds between the sweeps one worker at a time makes: expired leases handed back, expired inputs
    failed, missing messages re-sent. Lease + interval bounds how fast a lost worker's job runs again
    (about 25 s)."""
    store_retry_s: float = Field(default=30.0, ge=0)
    """Seconds a job's Redis reads and writes are retried with backoff while Redis is unreachable; past
    it the job is left to its lease and runs again once Redis is back."""
    max_memory_per_child_mb: int = Field(default=2048, ge=0)
    """A child whose RSS is above this after a job is replaced (0: never). Keep it well above a loaded
    child's size."""
    max_tasks_per_child: int = Field(default=0, ge=0)
    """Jobs after which a child is replaced (0: never)."""
    output_quality: int = Field(default=92, ge=1, le=100)
    """JPEG and WebP quality of results."""
    avif_quality: int = Field(default=75, ge=1, le=100)
    """AVIF quality of results (AVIF's own scale: 75 looks like jpeg/webp at 92, at about half the bytes of webp)."""
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    """Seconds between a child's heartbeats in Redis (`/readyz`, `/styles`); a heartbeat expires after
    three intervals."""
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Port on which the Celery main process serves the worker's `/metrics`. Unset: no metrics server."""
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    """What the engine computes in: `auto` (bf16 where the CPU runs bf16 natively, AVX512_BF16 or
    AMX-BF16, else int8 where it has int8 dot-product units, AVX512_VNNI, AVX-VNNI or AMX-INT8, else
    fp32), `fp32`, `bf16` or `int8` (a CPU without the units stops the worker at start with one line).
    Also read by `animegan stylize` and `animegan bench`."""
    # Webhook sender (worker/webhooks.py): one per worker, in a process of its own.
    webhook_retry_schedule_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_RETRY_SCHEDULE_S)
    )
    """Seconds before each webhook attempt, counted from the previous one; its length is the number of
    tries (1 to 20)."""
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    """Seconds one webhook POST may take, wall clock (connect, send, answer): then the connection is cut
    and the attempt failed, however the receiver trickles. At most 4 KiB of an answer's body is read."""
    webhook_concurrency: int = Field(default=4, ge=1, le=64)
    """Deliveries one worker's sender makes at once."""
    webhook_poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    """Seconds an idle sender waits before looking for due deliveries again."""
    webhook_keep_s: int = Field(default=86400, ge=1)
    """Seconds a delivered, given-up or refused delivery is kept in Redis for inspection."""

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
        """How long a claimed delivery is held: one resolution and one POST (its wall-clock deadline,
        worker.webhook_delivery), with room to render the body and record the attempt."""
        return self.webhook_resolve_timeout_s + self.webhook_timeout_s + 30.0

    @property
    def concurrency(self) -> int:
        return self.worker_concurrency or available_cores()

    @property
    def threads_per_child(self) -> int:
        return self.threads or max(1, available_cores() // self.concurrency)


def available_cores(cgroup_root: Path = CGROUP_ROOT, membership: Path = CGROUP_MEMBERSHIP) -> int:
    """CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota (v2 or v1)."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root, membership)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, membership: Path = CGROUP_MEMBERSHIP) -> float | None:
    """The smallest CPU quota, in CPUs, of this process's cgroups and their ancestors; None without one.

    cgroup v2 keeps it in ``cpu.max``, v1 in the cpu controller's ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us`` (hosts that still mount v1, where Docker and the kubelet set it there).
    A container sees its own cgroup at the root of each hierarchy; a host process sits below it,
    at the path ``/proc/self/cgroup`` names (a systemd unit's CPUQuota=), so every level counts.
    """
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    v1_mount = next((cgroup_root / name for name in ("cpu", "cpu,cpuacct") if (cgroup_root / name).is_dir()), None)
    quotas = [_quota_v2(cgroup_root)] + ([_quota_v1(v1_mount)] if v1_mount else [])
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        levels = [part for part in path.split("/") if part]
        if controllers == "":
            quotas += [_quota_v2(cgroup_root.joinpath(*levels[: i + 1])) for i in range(len(levels))]
        elif v1_mount and "cpu" in controllers.split(","):
            quotas += [_quota_v1(v1_mount.joinpath(*levels[: i + 1])) for i in range(len(levels))]
    return min((quota for quota in quotas if quota is not None), default=None)


def _quota_v2(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()
        return None if quota == "max" else _cpus(int(quota), int(period))
    except (OSError, ValueError):
        return None


def _quota_v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return _cpus(quota, period)


def _cpus(quota: int, period: int) -> float | None:
    """CPUs a quota allows per period; None for no limit (v1 writes -1)."""
    return quota / period if quota > 0 and period > 0 else None


def load_worker_settings() -> WorkerSettings:
    """Read the environment; a bad value stops the process with one line naming the variable."""
    try:
        return WorkerSettings()
    except ValidationError as exc:
        raise SystemExit(f"animegan worker: invalid configuration: {describe_errors(exc)}") from None
