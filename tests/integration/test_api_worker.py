"""Gateway + a real Celery worker process (prefork, one child, real hayao weights) + real Redis.

Submit a real photo, poll, fetch; identical requests and Idempotency-Key retries reuse the job;
results expire; a style the worker has no weights for ends failed with a useful message.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import redis
from PIL import Image

from imaging.decode import decode_image
from inference.pipeline import Stylizer
from inference.precision import resolve_precision
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
