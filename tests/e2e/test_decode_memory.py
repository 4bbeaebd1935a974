"""The gateway's memory under images that are tiny on the wire and huge decoded, measured on the
production API process (VmHWM and VmRSS from /proc/<pid>/status), while /healthz keeps answering.

At once: a 10-file batch of 6320x6320 lossless RGBA WebPs (1.7 KB each, 40 megapixels: more than
the decode budget can hold, refused from their headers), a 10-file batch of 6320x6320 grey+alpha
PNGs (78 KB each, decoded one after another within the budget), and two single uploads (one
such PNG, and the largest WebP the budget admits). Run with ``-s`` to print the figures.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MiB = 2**20
PEAK_LIMIT = 400 * MiB
HELD_LIMIT = 200 * MiB


def _encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


class Health:
    """Polls /healthz every 0.2 s from a thread; keeps every status and the slowest answer."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.statuses: list[int] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(0.2):
                started = time.monotonic()
                self.statuses.append(client.get(f"{self.base}/healthz").status_code)
                self.slowest = max(self.slowest, time.monotonic() - started)

    def __enter__(self) -> Health:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def test_tiny_huge_images_keep_the_gateway_under_400_mb_and_healthz_answering(
    redis_url: str, spawn_api: Callable[..., Any]
) -> None:
    webp_40mp = _encode(Image.new("RGBA", (6320, 6320)), "WEBP", lossless=True)
    la_png_40mp = _encode(Image.new("LA", (6320, 6320)), "PNG")
    webp_13mp = _encode(Image.new("RGBA", (3600, 3600), (200, 30, 60, 255)), "WEBP", lossless=True)
    api = spawn_api(redis_url, ANIMEGAN_MAX_SIDE="1024", ANIMEGAN_MAX_QUEUED_PER_CLIENT="50")
    assert httpx.get(f"{api.base}/readyz", timeout=10).status_code in (200, 503)  # warm: imports, connections
    before = _status(api.process.pid)

    def batch(data: bytes, name: str) -> httpx.Response:
        files = [("image", (f"{name}-{n}", data, "application/octet-stream")) for n in range(10)]
        return httpx.post(f"{api.base}/batches", files=files, timeout=240)

    def single(data: bytes, name: str) -> httpx.Response:
        return httpx.post(f"{api.base}/stylize", files={"image": (name, data, "image/png")}, timeout=240)

    with Health(api.base) as health, ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        webp_batch = pool.submit(batch, webp_40mp, "big.webp")
        png_batch = pool.submit(batch, la_png_40mp, "grey.png")
        png_single = pool.submit(single, la_png_40mp, "one.png")
        webp_single = pool.submit(single, webp_13mp, "one.webp")
        answers = [f.result() for f in (webp_batch, png_batch, png_single, webp_single)]
        elapsed = time.monotonic() - started
    time.sleep(2.0)
    after = _status(api.process.pid)

    print(
        f"\nAPI process: VmRSS {before['VmRSS'] / MiB:.0f} MiB before, VmHWM {after['VmHWM'] / MiB:.0f} MiB, "
        f"VmRSS {after['VmRSS'] / MiB:.0f} MiB after; {elapsed:.1f} s; slowest /healthz {health.slowest:.2f} s "
        f"of {len(health.statuses)}; statuses {[a.status_code for a in answers]}"
    )
    refused, decoded_batch, one_png, one_webp = answers
    assert refused.status_code == 422
    assert refused.json()["type"] == "/problems/batch-rejected"
    assert {job["problem"]["type"] for job in refused.json()["jobs"]} == {"/problems/too-many-pixels"}
    assert decoded_batch.status_code == 202, decoded_batch.text
    assert all(job["job"]["input"]["original_width"] == 6320 for job in decoded_batch.json()["jobs"])
    assert one_png.status_code == 202, one_png.text
    assert one_webp.status_code == 202, one_webp.text
    assert one_webp.json()["input"] == {"width": 1024, "height": 1024, "original_width": 3600, "original_height": 3600}
    assert set(health.statuses) == {200}
    assert health.slowest < 2.0
    assert after["VmHWM"] <= PEAK_LIMIT
    assert after["VmRSS"] <= HELD_LIMIT
