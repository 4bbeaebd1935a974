"""The gateway never imports torch or the inference runtime, not even indirectly."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("torch", "onnxruntime", "onnx", "openvino", "inference.engine", "inference.pipeline", "worker.tasks")

CHECK = f"""
import sys
from api.config import ApiSettings
from api.main import create_app
app = create_app(ApiSettings(redis_url="redis://127.0.0.1:1/0"))
app.openapi()
loaded = sorted(m for m in sys.modules if m in {FORBIDDEN!r} or m.split(".")[0] in {FORBIDDEN!r})
assert not loaded, loaded
"""


def test_building_the_app_imports_no_model_runtime() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
