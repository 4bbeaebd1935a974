"""A new user's first run: ``animegan serve --weights-dir DIR --style hayao`` with one ``.pt`` file, offline.

No ANIMEGAN_* variable is set and the user cache is empty: the two flags alone must give a ready
service whose default style is hayao and that serves a job, and while serve waits for itself to
become ready the gateway logs no ``/readyz`` 503 line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from animegan.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_weights_dir_and_style_flags_alone_give_a_working_service(tmp_path: Path, jobs: Any) -> None:
    weights = tmp_path / "my-weights"
    weights.mkdir()
    shutil.copy(SHARED / "weights" / "hayao.pt", weights / "hayao.pt")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMEGAN_", "PROMETHEUS_"))}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), TMPDIR=str(tmp_path))
    port = free_port()
    command = [sys.executable, "-m", "animegan", "serve", "--weights-dir", str(weights), "--style", "hayao"]
    serve = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(raw.decode(errors="replace") for raw in iter(serve.stdout.readline, b"")),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while not any("animegan: ready on" in line for line in lines):
            assert serve.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        assert httpx.get(f"{base}/readyz").status_code == 200
        styles = httpx.get(f"{base}/styles").json()
        assert styles["default"] == "hayao"
        assert [s["name"] for s in styles["styles"]] == ["hayao"]

        photo = (SHARED / "samples" / "chelsea.jpg").read_bytes()
        # No style field: the first --style is the default.
        job, _ = jobs.follow(base, jobs.submit(base, photo))
        assert job["style"] == "hayao"
        assert job["status"] == "succeeded"
        result = httpx.get(f"{base}/jobs/{job['id']}/result")
        assert result.status_code == 200
        assert result.headers["content-type"] == "image/png"
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(90)
        reader.join(10)
    output = "".join(lines)
    assert code == 0, output
    # The access log is in this output (the 200s are there), and no 503 of serve's own probing is.
    assert re.search(r"\"GET /readyz HTTP/1\.[01]\" 200", output), output
    assert not re.search(r"/readyz\S* HTTP/1\.[01]\" 503", output), output
    assert not [line for line in lines if "/readyz" in line and "503" in line], output
