"""The video package at run time: importing every module of it loads no model runtime, engine or service."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = (
    "api", "worker", "jobstore", "telemetry", "inference", "animegan", "loadtest",
    "torch", "onnxruntime", "onnx", "openvino",
    "fastapi", "starlette", "celery", "kombu", "redis", "prometheus_client", "uvicorn",
)  # fmt: skip


def test_video_imports_nothing_above_it() -> None:
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import video\n"
        "for info in pkgutil.walk_packages(video.__path__, 'video.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert {"video", "av", "imaging"} <= loaded
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
