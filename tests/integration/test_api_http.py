"""The gateway over a real socket against a real Redis, with no worker: every refusal and the queue.

Jobs sent here stay queued (no worker consumes these databases), which is what the queue-position,
backpressure, not-ready and expiry tests need. The worker-backed tests are in test_api_worker.py.
"""

from __future__ import annotations

import io
import math
import socket
import struct
import time
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from PIL import Image

from animegan.redis_server import free_port
from jobstore.heartbeats import Heartbeat
from jobstore.keys import SERVICE_TIME_KEY, WAITING_KEY, WORKERS_KEY, input_key, job_key, result_key
from jobstore.queue import estimate_wait_s
from jobstore.records import ErrorCode, JobRecord, JobState, is_job_id, new_job_id, now
from jobstore.transitions import add_mark_failed, add_mark_succeeded

PROBLEM = "application/problem+json"
Photo = Callable[[], bytes]
ApiFactory = Callable[..., str]


def _post(base: str, image: bytes, **kwargs: object) -> httpx.Response:
    data = kwargs.pop("data", None)
    headers = kwargs.pop("headers", None)
    return httpx.post(f"{base}/stylize", files={"image": ("p.jpg", image, "image/jpeg")}, data=data, headers=headers)  # type: ignore[arg-type]


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["type"] == f"/problems/{slug}"
    assert body["status"] == status
    return body


def _record(url: str, job_id: str) -> JobRecord:
    with redis.Redis.from_url(url) as client:
        return JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]


def test_accepted_job_is_stored_and_queued(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url)
    first = _post(base, photo(), headers={"X-Request-ID": "req-42"})
    assert first.status_code == 202, first.text
    job = first.json()
    assert first.headers["location"] == f"/jobs/{job['id']}"
    assert int(first.headers["retry-after"]) >= 1
    assert first.headers["x-request-id"] == "req-42"
    assert is_job_id(job["id"])
    assert job["status"] == "queued"
    assert job["queue_position"] == 1
    assert job["input"] == {"width": 128, "height": 85, "original_width": 192, "original_height": 128}
    assert job["links"] == {
        "status": f"/jobs/{job['id']}",
        "result": f"/jobs/{job['id']}/result",
        "download": None,  # only with object storage, once succeeded
        "download_expires_at": None,
    }
    second = _post(base, photo()).json()
    assert second["queue_position"] == 2
    with redis.Redis.from_url(redis_url) as client:
        raw = client.get(input_key(job["id"]))
        assert isinstance(raw, bytes)
        assert len(raw) == 128 * 85 * 3  # raw RGB, no container format
        assert 3500 < client.ttl(input_key(job["id"])) <= 3600  # type: ignore[operator]
    stored = _record(redis_url, job["id"])
    assert stored.request_id == "req-42"
    assert stored.style == "hayao"
    assert stored.format == "png"
    status = httpx.get(f"{base}/jobs/{job['id']}")
    assert status.status_code == 200
    assert status.json()["queue_position"] == 1


def test_unknown_or_malformed_job_ids_are_404(start_api: ApiFactory, redis_url: str) -> None:
    base = start_api(redis_url=redis_url)
    for job_id in (new_job_id(), "x", "a" * 200, "%00%0D%0A"):
        _problem(httpx.get(f"{base}/jobs/{job_id}"), 404, "job-not-found")
        _problem(httpx.get(f"{base}/jobs/{job_id}/result"), 404, "job-not-found")
    assert httpx.get(f"{base}/jobs/..%2F..%2Fetc").status_code == 404


def test_result_before_the_job_succeeded_is_409_with_retry_after(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url)
    job_id = _post(base, photo()).json()["id"]
    response = httpx.get(f"{base}/jobs/{job_id}/result")
    _problem(response, 409, "job-not-ready")
    assert int(response.headers["retry-after"]) >= 1


def _finish(url: str, job_id: str, result: bytes | None, code: ErrorCode | None = None) -> None:
    record = _record(url, job_id)
    with redis.Redis.from_url(url) as client:
        pipe = client.pipeline()
        if code is not None:
            add_mark_failed(pipe, record, code, "The image could not be decoded.")
        else:
            if result is not None:
                pipe.set(result_key(job_id), result)
            add_mark_succeeded(pipe, record, inference_s=0.1, width=128, height=85, size=len(result or b""))
        pipe.execute()


def test_result_is_served_from_redis_with_its_type_and_length(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url)
    job_id = _post(base, photo(), data={"format": "webp"}).json()["id"]
    _finish(redis_url, job_id, b"RIFF....WEBPVP8 fake")
    response = httpx.get(f"{base}/jobs/{job_id}/result")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["content-length"] == str(len(b"RIFF....WEBPVP8 fake"))
    assert response.content == b"RIFF....WEBPVP8 fake"
    job = httpx.get(f"{base}/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert job["output"] == {"format": "webp", "width": 128, "height": 85, "bytes": 20, "precision": None}


def test_failed_job_shows_its_error_and_has_no_result(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url)
    job_id = _post(base, photo()).json()["id"]
    _finish(redis_url, job_id, None, ErrorCode.INVALID_IMAGE)
    job = httpx.get(f"{base}/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"] == {
        "type": "/problems/invalid-image",
        "title": "Invalid image",
        "detail": "The image could not be decoded.",
    }
    _problem(httpx.get(f"{base}/jobs/{job_id}/result"), 409, "job-failed")


def test_expired_result_of_a_succeeded_job_is_404(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url)
    job_id = _post(base, photo()).json()["id"]
    _finish(redis_url, job_id, None)
    _problem(httpx.get(f"{base}/jobs/{job_id}/result"), 404, "result-expired")


def _raw_request(base: str, head: bytes, body_chunks: list[bytes] | None = None) -> tuple[bytes, int]:
    """Send ``head`` (and chunks while the server listens); return the response and bytes sent."""
    parts = urlsplit(base)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        for chunk in body_chunks or []:
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.001)
            try:
                peek = sock.recv(1, socket.MSG_PEEK)
            except (TimeoutError, BlockingIOError):
                peek = b""
            finally:
                sock.settimeout(30)
            if peek:
                break
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    return response, sent


def test_declared_oversize_body_is_413_before_any_of_it_is_sent(start_api: ApiFactory, redis_url: str) -> None:
    base = start_api(redis_url=redis_url)
    head = (
        b"POST /stylize HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 6291456\r\n\r\n"
    )
    response, _ = _raw_request(base, head)
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"application/problem+json" in response
    assert b"/problems/image-too-large" in response


def test_chunked_oversize_body_is_cut_off_while_streaming(start_api: ApiFactory, redis_url: str) -> None:
    base = start_api(redis_url=redis_url, max_upload_bytes=256 * 1024)
    head = (
        b"POST /stylize HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    payload = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n' + b"\xff" * 65536
    chunk = b"%x\r\n%s\r\n" % (len(payload), payload)
    response, sent = _raw_request(base, head, [chunk] * 200)  # up to 13 MB offered
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"/problems/image-too-large" in response
    assert sent < 2 * 1024 * 1024  # refused long before the client finished


def test_upload_one_byte_over_the_limit_is_413(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url, max_upload_bytes=64 * 1024)
    image = photo()
    padded = image + b"\0" * (64 * 1024 + 1 - len(image))
    _problem(_post(base, padded), 413, "image-too-large")


@pytest.mark.parametrize(
    "data",
    [b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", b"II*\x00" + b"\0" * 64, b"<html><body>hi</body></html>", b"%PDF-1.7"],
)
def test_formats_outside_the_allow_list_are_415(start_api: ApiFactory, redis_url: str, data: bytes) -> None:
    base = start_api(redis_url=redis_url)
    _problem(_post(base, data), 415, "unsupported-media-type")


def test_non_multipart_body_is_415(start_api: ApiFactory, redis_url: str) -> None:
    base = start_api(redis_url=redis_url)
    _problem(httpx.post(f"{base}/stylize", json={"image": "aGVsbG8="}), 415, "unsupported-media-type")


def test_malformed_multipart_is_400(start_api: ApiFactory, redis_url: str) -> None:
    base = start_api(redis_url=redis_url)
    response = httpx.post(
        f"{base}/stylize", content=b"--x\r\nnot a part", headers={"content-type": "multipart/form-data"}
    )
    _problem(response, 400, "malformed-request")


def _bomb_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_bad_images_and_fields_are_422(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url)
    image = photo()
    _problem(_post(base, image[: len(image) // 2]), 422, "invalid-image")
    _problem(_post(base, _bomb_png(20_000, 20_000)), 422, "too-many-pixels")
    body = _problem(_post(base, image, data={"style": "nonexistent"}), 422, "validation-error")
    assert body["errors"] == [{"loc": ["body", "style"], "msg": body["detail"]}]
    _problem(_post(base, image, data={"format": "gif"}), 422, "validation-error")
    missing = httpx.post(f"{base}/stylize", files={"picture": ("p.jpg", image, "image/jpeg")})
    _problem(missing, 422, "validation-error")
    with redis.Redis.from_url(redis_url) as client:
        assert client.llen(WAITING_KEY) == 0  # nothing bad reached the queue


def test_full_queue_is_503_with_retry_after_from_depth_and_service_time(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, max_queue_depth=2)
    with redis.Redis.from_url(redis_url) as client:
        client.set(SERVICE_TIME_KEY, "10.0")
    assert _post(base, photo()).status_code == 202
    assert _post(base, photo()).status_code == 202
    response = _post(base, photo())
    body = _problem(response, 503, "queue-full")
    # Two waiting jobs plus this one, 10 s each, no live worker counted as one.
    assert int(response.headers["retry-after"]) == math.ceil(estimate_wait_s(2, 10.0, 1)) == 30
    assert body["queue_depth"] == 2
    with redis.Redis.from_url(redis_url) as client:
        assert client.llen(WAITING_KEY) == 2


def test_unreachable_broker_is_503_and_the_job_is_not_left_queued(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    response = _post(base, photo())
    _problem(response, 503, "broker-unavailable")
    assert response.headers["retry-after"]
    with redis.Redis.from_url(redis_url) as client:
        assert client.llen(WAITING_KEY) == 0
        failed = [JobRecord.from_hash(client.hgetall(k)) for k in client.scan_iter(job_key("*"))]  # type: ignore[arg-type]
    assert [(r.state, r.error_code) for r in failed] == [(JobState.FAILED, ErrorCode.BROKER_UNAVAILABLE)]


def test_unreachable_redis_is_503_while_health_stays_200(start_api: ApiFactory, photo: Photo) -> None:
    base = start_api(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    _problem(_post(base, photo()), 503, "broker-unavailable")
    _problem(httpx.get(f"{base}/jobs/{new_job_id()}"), 503, "broker-unavailable")
    _problem(httpx.get(f"{base}/readyz"), 503, "not-ready")
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base}/metrics").status_code == 200


def test_ready_only_with_a_live_worker_heartbeat(start_api: ApiFactory, redis_url: str) -> None:
    base = start_api(redis_url=redis_url)
    _problem(httpx.get(f"{base}/readyz"), 503, "not-ready")
    assert httpx.get(f"{base}/styles").json()["styles"] == [{"name": "hayao", "default": True, "available": False}]
    beat = Heartbeat(worker_id="h:1", pid=1, styles=["hayao"], threads=1, expires_at=now() + 60)
    with redis.Redis.from_url(redis_url) as client:
        client.hset(WORKERS_KEY, beat.worker_id, beat.model_dump_json())
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "redis": "ok", "workers": 1, "queue_depth": 0}
    assert httpx.get(f"{base}/styles").json()["styles"][0]["available"] is True


def test_identical_request_while_queued_gets_the_same_job(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url)
    image = photo()
    first = _post(base, image)
    again = _post(base, image)
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["deduplicated"] is True
    assert again.headers["x-deduplicated"] == "true"
    other_format = _post(base, image, data={"format": "jpeg"})
    assert other_format.json()["id"] != first.json()["id"]
    with redis.Redis.from_url(redis_url) as client:
        assert client.llen(WAITING_KEY) == 2


def test_same_pixels_in_another_file_are_deduplicated_too(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url)
    with Image.open(io.BytesIO(photo())) as img:
        pixels = img.convert("RGB")
    encodings = []
    for level in (1, 9):
        buffer = io.BytesIO()
        pixels.save(buffer, "PNG", compress_level=level)
        encodings.append(buffer.getvalue())
    assert encodings[0] != encodings[1]
    first = _post(base, encodings[0]).json()
    second = _post(base, encodings[1]).json()
    assert (second["id"], second["deduplicated"]) == (first["id"], True)


def test_identical_upload_is_answered_even_when_the_queue_is_full(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, max_queue_depth=1)
    image = photo()
    first = _post(base, image).json()
    again = _post(base, image)
    assert again.status_code == 202
    assert again.json()["id"] == first["id"]
    _problem(_post(base, photo()), 503, "queue-full")


def test_failed_job_is_not_reused_by_dedup(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url)
    image = photo()
    first = _post(base, image).json()["id"]
    _finish(redis_url, first, None, ErrorCode.INTERNAL_ERROR)
    second = _post(base, image).json()
    assert second["id"] != first
    assert second["deduplicated"] is False


def test_idempotency_key_maps_retries_to_one_job(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url)
    image = photo()
    first = _post(base, image, headers={"Idempotency-Key": "order-17"})
    retry = _post(base, image, headers={"Idempotency-Key": "order-17"})
    assert retry.status_code == 202
    assert retry.json()["id"] == first.json()["id"]
    assert retry.headers["idempotent-replayed"] == "true"
    changed = _post(base, image, data={"style": "hayao", "format": "jpeg"}, headers={"Idempotency-Key": "order-17"})
    _problem(changed, 422, "idempotency-key-reused")
    _problem(_post(base, image, headers={"Idempotency-Key": "x" * 300}), 422, "validation-error")
    other_key = _post(base, image, headers={"Idempotency-Key": "order-18"})
    assert other_key.json()["id"] == first.json()["id"]  # same request: deduplicated
    assert _post(base, image, headers={"Idempotency-Key": "order-18"}).headers["idempotent-replayed"] == "true"


def test_records_expire_after_their_ttl(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url, record_ttl_s=1, input_ttl_s=1, result_ttl_s=1)
    job_id = _post(base, photo()).json()["id"]
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/jobs/{job_id}").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.25)
    _problem(httpx.get(f"{base}/jobs/{job_id}"), 404, "job-not-found")
    with redis.Redis.from_url(redis_url) as client:
        assert client.exists(input_key(job_id), job_key(job_id)) == 0


def test_metrics_and_docs_are_served(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url)
    job_id = _post(base, photo()).json()["id"]
    _post(base, b"GIF89a")
    assert httpx.get(f"{base}/jobs/{job_id}").status_code == 200
    assert httpx.get(f"{base}/jobs/{job_id}/result").status_code == 409
    text = httpx.get(f"{base}/metrics").text
    assert 'animegan_http_requests_total{method="POST",route="/stylize",status="202"}' in text
    assert 'animegan_rejections_total{reason="unsupported"}' in text
    assert "animegan_queue_depth" in text
    # The job URLs just requested are counted under their route templates, never under the raw path.
    route_lines = [line for line in text.splitlines() if "route=" in line]
    assert any('route="/jobs/{job_id}",status="200"' in line for line in route_lines)
    assert any('route="/jobs/{job_id}/result",status="409"' in line for line in route_lines)
    assert not [line for line in route_lines if job_id in line]
    assert "/jobs/" not in "".join(line for line in route_lines if "{job_id}" not in line)
    assert httpx.get(f"{base}/docs").status_code == 200
    spec = httpx.get(f"{base}/openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/stylize"]["post"]["requestBody"]["content"]
