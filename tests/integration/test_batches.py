"""Batches against the real gateway on a socket, real Redis and (for results) the real worker.

Refusals run on a database no worker listens on, so what was queued stays visible in the
``waiting`` list; results, events and webhooks run through real worker processes.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis
from PIL import Image

from animegan.client.protocol import EventDecoder
from imaging.decode import decode_image
from jobstore.keys import WAITING_KEY, WEBHOOKS_DUE_KEY, batch_key, batch_pending_key, job_key, result_key, webhook_key
from jobstore.records import ErrorCode, JobRecord
from jobstore.transitions import add_mark_failed, add_mark_succeeded

ApiFactory = Callable[..., str]
Photo = Callable[[], bytes]
UNDECODABLE = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"\x00" * 200  # a JPEG signature, then nothing decodable
SECRET = "test-webhook-secret-batches-0123"


def _tiny_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 90, 40)).save(buffer, "JPEG", quality=80)
    assert len(buffer.getvalue()) < 4096
    return buffer.getvalue()


TINY_JPEG = _tiny_jpeg()


def post_batch(base: str, files: list[tuple[str, bytes]], **fields: str) -> httpx.Response:
    """POST /batches with a multipart body written by hand: file names go out byte for byte (httpx
    would percent-encode control characters)."""
    boundary = "batch-test-boundary-7f3a"
    body = bytearray()
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for filename, data in files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        body += head.encode() + b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return httpx.post(f"{base}/batches", content=bytes(body), headers=headers, timeout=60)


def waiting(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.llen(WAITING_KEY))


def events_until_end(base: str, batch_id: str, timeout_s: float = 180.0) -> list[tuple[str, dict[str, Any]]]:
    seen = []
    decoder = EventDecoder()
    with httpx.stream("GET", f"{base}/batches/{batch_id}/events", timeout=timeout_s) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            event = decoder.feed(line)
            if event is not None:
                seen.append((event.event, json.loads(event.data)))
    return seen


def test_batch_of_five_with_an_undecodable_file_in_the_middle_zips_four_results(
    start_api: ApiFactory, worker_redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=worker_redis_url)
    images = [photo() for _ in range(4)]
    files = [
        ("cat.jpg", images[0]),
        ("cat.jpg", images[1]),
        ("broken.jpg", UNDECODABLE),
        ("../../etc/pass\x07wd.jpeg", images[2]),
        ("C:\\photos\\Cat.JPG", images[3]),
    ]
    accepted = post_batch(base, files, format="png")
    assert accepted.status_code == 202, accepted.text
    batch = accepted.json()
    assert accepted.headers["location"] == f"/batches/{batch['id']}"
    assert [e["index"] for e in batch["jobs"]] == [0, 1, 2, 3, 4]
    assert [e["filename"] for e in batch["jobs"]] == ["cat.jpg", "cat.jpg", "broken.jpg", "passwd.jpeg", "Cat.JPG"]
    bad = batch["jobs"][2]
    assert bad["job"] is None
    assert bad["problem"]["type"] == "/problems/invalid-image"
    assert bad["problem"]["title"] == "Invalid image"
    assert bad["problem"]["status"] == 422
    assert bad["problem"]["detail"]
    assert all(e["job"]["status"] in ("queued", "running") for i, e in enumerate(batch["jobs"]) if i != 2)
    assert batch["counts"]["rejected"] == 1

    events = events_until_end(base, batch["id"])
    assert events[-1][0] == "completed"
    last = events[-1][1]
    assert last["counts"] == {"queued": 0, "running": 0, "succeeded": 4, "failed": 0, "rejected": 1, "expired": 0}
    assert all(e["job"]["status"] == "succeeded" for e in last["jobs"] if e["job"] is not None)
    assert all(name == "in_progress" for name, _ in events[:-1])

    response = httpx.get(f"{base}/batches/{batch['id']}/results.zip", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["x-animegan-pending"] == "0"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.namelist() == ["cat.png", "cat-2.png", "passwd.png", "Cat-3.png"]
    assert archive.testzip() is None
    for name, image in zip(archive.namelist(), images, strict=True):
        with Image.open(io.BytesIO(archive.read(name))) as result:
            assert result.format == "PNG"
            assert result.size == decode_image(image, max_side=128).image.size


def test_batch_that_expires_while_followed_ends_with_an_expired_problem(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url)
    accepted = post_batch(base, [("a.jpg", photo())])
    assert accepted.status_code == 202, accepted.text
    batch_id = accepted.json()["id"]
    seen = []
    decoder = EventDecoder()
    with httpx.stream("GET", f"{base}/batches/{batch_id}/events", timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            event = decoder.feed(line)
            if event is None:
                continue
            seen.append((event.event, json.loads(event.data)))
            if event.event == "in_progress":  # no worker: the job waits, and the stream re-reads the batch
                with redis.Redis.from_url(redis_url) as client:
                    client.delete(batch_key(batch_id))
    assert [name for name, _ in seen] == ["in_progress", "expired"]
    assert seen[-1][1] == {
        "type": "/problems/batch-not-found",
        "title": "Batch not found",
        "status": 404,
        "detail": "The batch expired while it was followed.",
        "instance": f"/batches/{batch_id}/events",
    }


def test_batch_past_the_client_quota_is_429_and_queues_nothing(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, max_queued_per_client=3)
    first = httpx.post(f"{base}/stylize", files={"image": ("a.jpg", photo(), "image/jpeg")}, timeout=30)
    assert first.status_code == 202
    refused = post_batch(base, [(f"{n}.jpg", photo()) for n in range(3)])
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/client-quota"
    assert int(refused.headers["retry-after"]) >= 1
    assert waiting(redis_url) == 1
    with redis.Redis.from_url(redis_url) as client:
        assert client.keys("animegan:batch:*") == []
    # Exactly what is left of the quota passes, all at once.
    fits = post_batch(base, [(f"{n}.jpg", photo()) for n in range(2)])
    assert fits.status_code == 202, fits.text
    assert waiting(redis_url) == 3
    with redis.Redis.from_url(redis_url) as client:
        assert client.ttl(batch_key(fits.json()["id"])) > 0
        assert client.scard(batch_pending_key(fits.json()["id"])) == 2


def test_batch_past_the_queue_depth_is_503_and_queues_nothing(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, max_queue_depth=3)
    refused = post_batch(base, [(f"{n}.jpg", photo()) for n in range(4)])
    assert refused.status_code == 503
    assert refused.json()["type"] == "/problems/queue-full"
    assert int(refused.headers["retry-after"]) >= 1
    assert waiting(redis_url) == 0


def test_another_clients_batch_is_404_and_a_batch_without_good_files_is_422(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url)
    accepted = post_batch(base, [("a.jpg", photo())])
    assert accepted.status_code == 202
    batch_id = accepted.json()["id"]
    assert httpx.get(f"{base}/batches/{batch_id}", timeout=10).status_code == 200
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
    with other:
        for path in ("", "/results.zip", "/events"):
            response = other.get(f"{base}/batches/{batch_id}{path}")
            assert response.status_code == 404, path
            assert response.json()["type"] == "/problems/batch-not-found"
    not_ready = httpx.get(f"{base}/batches/{batch_id}/results.zip", timeout=10)
    assert not_ready.status_code == 409
    assert int(not_ready.headers["retry-after"]) >= 1

    rejected = post_batch(base, [("x.jpg", UNDECODABLE), ("y.txt", b"hello, not an image")])
    assert rejected.status_code == 422
    body = rejected.json()
    assert body["type"] == "/problems/batch-rejected"
    assert [j["problem"]["type"] for j in body["jobs"]] == [
        "/problems/invalid-image",
        "/problems/unsupported-media-type",
    ]
    assert waiting(redis_url) == 1


def test_too_many_files_is_refused(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url, max_batch_files=2)
    image = photo()
    refused = post_batch(base, [(f"{n}.jpg", image) for n in range(3)])
    assert refused.status_code == 422
    assert refused.json()["type"] == "/problems/too-many-files"
    assert waiting(redis_url) == 0


@dataclass
class Receiver:
    port: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, event: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for h, b in self.received if h.get("animegan-event") == event]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def verified(headers: dict[str, str], body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in headers["animegan-signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - int(parts["t"])) < 300 and hmac.compare_digest(expected, parts["v1"])


def test_batch_completed_is_delivered_once_signed_with_the_batch_as_body(
    start_api: ApiFactory, redis_url: str, spawn_worker: Callable[..., Any], receiver: Receiver, photo: Photo
) -> None:
    spawn_worker(
        redis_url,
        ANIMEGAN_WEBHOOK_SECRET=SECRET,
        ANIMEGAN_WEBHOOK_ALLOW_PRIVATE="true",
        ANIMEGAN_WEBHOOK_POLL_INTERVAL_S="0.2",
    )
    base = start_api(redis_url=redis_url, webhook_secret=SECRET, webhook_allow_private=True)
    url = f"http://127.0.0.1:{receiver.port}/hook"
    accepted = post_batch(base, [("a.jpg", photo()), ("bad.jpg", UNDECODABLE), ("b.jpg", photo())], callback_url=url)
    assert accepted.status_code == 202, accepted.text
    batch_id = accepted.json()["id"]
    deadline = time.monotonic() + 180
    while not receiver.of("batch.completed") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # a second delivery would arrive within a few poll intervals
    [(headers, body)] = receiver.of("batch.completed")
    assert verified(headers, body)
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == httpx.get(f"{base}/batches/{batch_id}", timeout=10).json()
    assert json.loads(body)["status"] == "completed"
    # The callback applies to every job of the batch too: each announces its own end.
    assert len(receiver.of("job.succeeded")) == 2
    assert len({h["animegan-delivery"] for h, _ in receiver.received}) == 3


def test_batch_completed_is_scheduled_once_by_the_last_end_even_if_an_end_is_written_twice(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, webhook_secret=SECRET, webhook_allow_private=True)
    accepted = post_batch(base, [("a.jpg", photo()), ("b.jpg", photo())], callback_url="http://127.0.0.1:9/hook")
    assert accepted.status_code == 202, accepted.text
    batch_id = accepted.json()["id"]
    first, second = (entry["job"]["id"] for entry in accepted.json()["jobs"])
    client = redis.Redis.from_url(redis_url)

    def end(job_id: str, succeed: bool) -> None:
        record = JobRecord.from_hash(client.hgetall(job_key(job_id)))
        pipe = client.pipeline()
        if succeed:
            client.set(result_key(job_id), b"png bytes")
            add_mark_succeeded(pipe, record, inference_s=0.1, width=8, height=8, size=9)
        else:
            add_mark_failed(pipe, record, ErrorCode.INVALID_IMAGE, "bad pixels")
        pipe.execute()

    def batch_deliveries() -> list[dict[bytes, bytes]]:
        hashes = [client.hgetall(webhook_key(m.decode())) for m in client.zrange(WEBHOOKS_DUE_KEY, 0, -1)]
        return [h for h in hashes if h[b"event"] == b"batch.completed"]

    with client:
        end(first, succeed=False)
        end(first, succeed=False)  # a repeated terminal write must not count twice
        assert batch_deliveries() == []
        assert client.scard(batch_pending_key(batch_id)) == 1
        end(second, succeed=True)
        [delivery] = batch_deliveries()
        assert delivery[b"batch_id"] == batch_id.encode()
        assert delivery[b"url"] == b"http://127.0.0.1:9/hook"
        end(second, succeed=True)
        assert len(batch_deliveries()) == 1
        body = httpx.get(f"{base}/batches/{batch_id}", timeout=10).json()
        assert body["status"] == "completed"
        assert body["counts"]["failed"] == 1
        assert body["counts"]["succeeded"] == 1


def test_batch_body_may_carry_every_file_at_full_size_and_each_file_is_judged_alone(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    limit = 64 * 1024
    base = start_api(redis_url=redis_url, max_upload_bytes=limit, max_batch_files=2)
    # Over the per-file limit, and alone over the body limit of /stylize (limit + 16 KiB).
    big = UNDECODABLE + b"\x00" * (limit + 20_000 - len(UNDECODABLE))
    answered = post_batch(base, [("big.jpg", big), ("ok.jpg", photo())])
    assert answered.status_code == 202, answered.text
    big_entry, ok_entry = answered.json()["jobs"]
    assert big_entry["problem"]["type"] == "/problems/image-too-large"
    assert ok_entry["job"]["status"] == "queued"
    too_big = post_batch(base, [("a.jpg", big), ("b.jpg", big + big)])
    assert too_big.status_code == 413
    assert too_big.json()["type"] == "/problems/image-too-large"
    assert waiting(redis_url) == 1


def test_results_zip_of_a_batch_whose_every_job_was_deleted_is_409_batch_no_results(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url)
    accepted = post_batch(base, [("a.jpg", photo()), ("b.jpg", photo())])
    assert accepted.status_code == 202
    batch = accepted.json()
    for item in batch["jobs"]:
        assert httpx.delete(f"{base}/jobs/{item['job']['id']}", timeout=10).status_code == 204
    response = httpx.get(f"{base}/batches/{batch['id']}/results.zip", timeout=10)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/batch-no-results"


def test_an_empty_part_is_422_like_stylize_and_a_part_without_filename_is_refused_not_dropped(
    start_api: ApiFactory, redis_url: str, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url)
    boundary = "batch-test-boundary-empty"
    parts = [
        ('name="image"; filename="good.jpg"', photo()),
        ('name="image"; filename="empty.jpg"', b""),
        ('name="image"', TINY_JPEG),  # no filename: a text field to the multipart parser
    ]
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode() + data + b"\r\n"
        for disposition, data in parts
    )
    body += f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = httpx.post(f"{base}/batches", content=body, headers=headers, timeout=60)
    assert response.status_code == 202, response.text
    jobs = response.json()["jobs"]
    assert len(jobs) == 3
    assert jobs[0]["job"] is not None
    assert jobs[1]["problem"]["type"] == "/problems/invalid-image"
    assert jobs[1]["problem"]["status"] == 422
    assert jobs[2]["job"] is None
    assert jobs[2]["problem"]["type"] == "/problems/validation-error"
    assert "no filename" in jobs[2]["problem"]["detail"]
    single = httpx.post(f"{base}/stylize", files={"image": ("empty.jpg", b"", "image/jpeg")}, timeout=30)
    assert (single.status_code, single.json()["type"]) == (422, "/problems/invalid-image")
    assert waiting(redis_url) == 1
    # A part without a filename over the 4 KB cap of text fields: the answer says what to do.
    big = body.replace(TINY_JPEG, photo())
    refused = httpx.post(f"{base}/batches", content=big, headers=headers, timeout=60)
    assert refused.status_code == 400
    assert "send each image as a file part with a filename" in refused.json()["detail"]
