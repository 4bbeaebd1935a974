"""Gateway + a real Celery worker process (prefork, one child, real hayao weights) + real Redis.

Submit a real photo, poll, fetch; identical requests and Idempotency-Key retries reuse the job;
results expire; a style the worker has no weights for ends failed with a useful message; a worker
started with ANIMEGAN_PRECISION=int8 computes in int8 (job body, metrics, log) where the CPU has
int8 units, and refuses to start where it has not.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from animegan.redis_server import free_port
from imaging.decode import decode_image
from inference.pipeline import Stylizer
from inference.precision import cpu_flags, has_int8_units, native_built, resolve_precision
from jobstore.keys import input_key, job_key, result_key
from jobstore.records import JobRecord

WEIGHTS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "weights"
ApiFactory = Callable[..., str]
Photo = Callable[[], bytes]


def _wait(base: str, job_id: str, timeout_s: float = 120.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, object] = httpx.get(f"{base}/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not finish")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _submit(base: str, image: bytes, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{base}/stylize", files={"image": ("p.jpg", image, "image/jpeg")}, **kwargs)  # type: ignore[arg-type]


def test_photo_round_trip_matches_a_direct_run(start_api: ApiFactory, worker_redis_url: str, samples_dir: Path) -> None:
    base = start_api(redis_url=worker_redis_url)
    assert httpx.get(f"{base}/readyz").status_code == 200
    photo = (samples_dir / "railway_crossing.jpg").read_bytes()
    accepted = _submit(base, photo)
    assert accepted.status_code == 202
    job = _wait(base, accepted.json()["id"])
    assert job["status"] == "succeeded", job
    timings = job["timings"]
    assert isinstance(timings, dict)
    assert timings["queue_s"] >= 0
    assert timings["inference_s"] > 0
    # The default precision (auto) as resolved on this CPU computed it, and the record says so.
    assert job["output"]["precision"] == str(resolve_precision("auto"))  # type: ignore[index]
    result = httpx.get(f"{base}/jobs/{job['id']}/result")
    assert result.status_code == 200
    assert result.headers["content-type"] == "image/png"
    assert int(result.headers["content-length"]) == len(result.content) == job["output"]["bytes"]  # type: ignore[index]
    served = np.asarray(Image.open(io.BytesIO(result.content)).convert("RGB"))
    normalized = decode_image(photo, max_side=128).image
    assert served.shape == (normalized.height, normalized.width, 3)
    # The same generator run here, single-threaded (the worker child runs with 2 threads).
    direct = Stylizer.load("hayao", weights_dir=WEIGHTS_DIR, threads=1, precision="auto").stylize(normalized)
    assert _psnr(served, np.asarray(direct)) >= 45


def test_identical_request_after_success_is_answered_without_recomputing(
    start_api: ApiFactory, worker_redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=worker_redis_url)
    image = photo()
    first = _wait(base, _submit(base, image).json()["id"])
    again = _submit(base, image)
    assert again.status_code == 202
    body = again.json()
    assert (body["id"], body["status"], body["deduplicated"]) == (first["id"], "succeeded", True)
    assert "retry-after" not in again.headers
    with redis.Redis.from_url(worker_redis_url) as client:
        record = JobRecord.from_hash(client.hgetall(job_key(body["id"])))  # type: ignore[arg-type]
    assert record.attempts == 1  # one inference in all


def test_idempotency_key_retries_run_one_job(start_api: ApiFactory, worker_redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=worker_redis_url)
    image = photo()
    first = _submit(base, image, headers={"Idempotency-Key": "retry-me"}).json()
    second = _submit(base, image, headers={"Idempotency-Key": "retry-me"})
    assert second.json()["id"] == first["id"]
    assert _wait(base, first["id"])["status"] == "succeeded"
    third = _submit(base, image, headers={"Idempotency-Key": "retry-me"})
    assert (third.json()["id"], third.json()["status"]) == (first["id"], "succeeded")
    other = _submit(base, photo(), headers={"Idempotency-Key": "retry-me"})
    assert other.status_code == 422
    assert other.json()["type"] == "/problems/idempotency-key-reused"


def test_results_and_records_expire(start_api: ApiFactory, worker_redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=worker_redis_url, result_ttl_s=2, record_ttl_s=3, input_ttl_s=60)
    job = _wait(base, _submit(base, photo()).json()["id"])
    assert job["status"] == "succeeded"
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/jobs/{job['id']}").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.25)
    gone = httpx.get(f"{base}/jobs/{job['id']}/result")
    assert gone.status_code == 404
    assert gone.json()["type"] == "/problems/job-not-found"
    with redis.Redis.from_url(worker_redis_url) as client:
        keys = [
            job_key(str(job["id"])),
            result_key(str(job["id"])),
            input_key(str(job["id"])),
        ]
        assert client.exists(*keys) == 0


def test_style_the_worker_cannot_serve_fails_with_a_useful_message(
    start_api: ApiFactory, worker_redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=worker_redis_url, styles=["hayao", "paprika"])
    styles = httpx.get(f"{base}/styles").json()["styles"]
    assert {s["name"]: s["available"] for s in styles} == {"hayao": True, "paprika": False}
    job = _wait(base, _submit(base, photo(), data={"style": "paprika"}).json()["id"])
    assert job["status"] == "failed"
    error = job["error"]
    assert isinstance(error, dict)
    assert error["type"] == "/problems/model-unavailable"
    assert "paprika" in error["detail"]
    result = httpx.get(f"{base}/jobs/{job['id']}/result")
    assert result.status_code == 409
    assert result.json()["type"] == "/problems/job-failed"


def _engine_info(port: int) -> set[tuple[str, str]]:
    """The (precision, runtime) series of animegan_worker_engine_info the worker exports."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.labels["precision"], sample.labels["runtime"])
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "animegan_worker_engine_info" and sample.value == 1
    }


def test_int8_round_trip_through_a_real_worker_or_its_refusal(
    start_api: ApiFactory, redis_url: str, spawn_worker: Any, samples_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    if not (has_int8_units(cpu_flags()) and native_built()):
        # The hardware decides: without int8 units the worker stops at start with one line.
        worker = spawn_worker(redis_url, wait=False, log=log, ANIMEGAN_PRECISION="int8")
        assert worker.wait(120) != 0
        assert "Precision int8 needs" in log.read_text()
        return
    metrics_dir, port = tmp_path / "metrics", free_port()
    metrics_dir.mkdir()
    spawn_worker(
        redis_url,
        log=log,
        ANIMEGAN_PRECISION="int8",
        ANIMEGAN_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    base = start_api(redis_url=redis_url)
    photo = (samples_dir / "coffee.jpg").read_bytes()
    job = _wait(base, _submit(base, photo).json()["id"])
    assert job["status"] == "succeeded", job
    assert job["output"]["precision"] == "int8"  # type: ignore[index]
    result = httpx.get(f"{base}/jobs/{job['id']}/result")
    served = np.asarray(Image.open(io.BytesIO(result.content)).convert("RGB"))
    normalized = decode_image(photo, max_side=128).image
    # int8 results do not depend on the thread count: the direct run is the same image, bit for bit.
    direct = Stylizer.load("hayao", weights_dir=WEIGHTS_DIR, threads=1, precision="int8").stylize(normalized)
    assert np.array_equal(served, np.asarray(direct))
    fp32 = Stylizer.load("hayao", weights_dir=WEIGHTS_DIR, threads=1, precision="fp32").stylize(normalized)
    assert _psnr(served, np.asarray(fp32)) >= 40
    assert _engine_info(port) == {("int8", "onednn")}
    assert "precision=int8" in log.read_text() or '"precision": "int8"' in log.read_text()


def test_a_worker_asked_for_int8_without_int8_units_stops_with_one_line(
    redis_url: str, spawn_worker: Any, tmp_path: Path
) -> None:
    # oneDNN's ISA cap hides the CPU's VNNI from the kernels, and so from the precision choice:
    # the same as a CPU without int8 units (Zen 3, AVX2 only).
    log = tmp_path / "worker.log"
    worker = spawn_worker(redis_url, wait=False, log=log, ANIMEGAN_PRECISION="int8", ONEDNN_MAX_CPU_ISA="AVX2")
    assert worker.wait(120) != 0
    lines = [line for line in log.read_text().splitlines() if "Precision int8 needs" in line]
    assert len(lines) == 1, log.read_text()
    assert "avx512_vnni" not in lines[0]  # the flags it names are those the kernels may use
