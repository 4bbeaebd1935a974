"""Many clients, one service: fair order, per-client quotas, atomic admission, privacy, DELETE.

Real gateways on real sockets (``start_api``), a real Redis, and a real worker where a job must run
(``spawn_worker``: the production command). Clients are API keys (a keys file), so two clients
can share one address, as two apps behind one proxy do.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from PIL import Image

from api.tenancy.keys import key_digest
from jobstore.keys import WAITING_KEY, client_active_key, job_key, result_key
from jobstore.queue import QueueScripts, claim_call
from jobstore.records import JobRecord, now

ApiFactory = Callable[..., str]
Photo = Callable[[], bytes]
KEYS = {"alice": "agk_alice-key-for-the-tenant-tests", "bob": "agk_bob-key-for-the-tenant-tests"}


def _keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text("".join(f"{name} {key_digest(key)}\n" for name, key in KEYS.items()))
    return path


def _as(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def _submit(base: str, image: bytes, who: str) -> httpx.Response:
    files = {"image": ("p.jpg", image, "image/jpeg")}
    return httpx.post(f"{base}/stylize", files=files, headers=_as(who), timeout=60)


def _record(url: str, job_id: str) -> JobRecord:
    with redis.Redis.from_url(url) as client:
        return JobRecord.from_hash(client.hgetall(job_key(job_id)))  # type: ignore[arg-type]


def test_a_client_behind_a_flood_waits_for_one_job_of_the_flood_not_for_ten(
    start_api: ApiFactory,
    redis_url: str,
    tmp_path: Path,
    photo: Photo,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    base = start_api(redis_url=redis_url, api_keys_file=_keys_file(tmp_path))
    flood = [_submit(base, photo(), "alice").json()["id"] for _ in range(10)]
    steady = _submit(base, photo(), "bob").json()
    # Positions are the round-robin order: bob is second, alice's jobs interleave after his.
    assert steady["queue_position"] == 2
    positions = [httpx.get(f"{base}/jobs/{j}", headers=_as("alice")).json()["queue_position"] for j in flood]
    assert positions == [1, 3, *range(4, 12)]
    spawn_worker(redis_url, ANIMEGAN_THREADS="1")
    with httpx.Client(timeout=30) as client:
        for job_id, who in [(steady["id"], "bob"), *((j, "alice") for j in flood)]:
            for _ in range(600):
                if client.get(f"{base}/jobs/{job_id}", headers=_as(who)).json()["status"] == "succeeded":
                    break
                time.sleep(0.1)
    started = sorted([steady["id"], *flood], key=lambda j: _record(redis_url, j).started_at or 0)
    assert started.index(steady["id"]) < started.index(flood[2])  # bob before alice's third job
    assert started.index(steady["id"]) == 1
    assert [j for j in started if j != steady["id"]] == flood  # alice's own jobs in her order


def test_past_the_quota_a_client_gets_429_and_others_are_still_served(
    start_api: ApiFactory, redis_url: str, tmp_path: Path, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, api_keys_file=_keys_file(tmp_path), max_queued_per_client=3)
    before = _refusals(base)
    assert [_submit(base, photo(), "alice").status_code for _ in range(3)] == [202] * 3
    refused = _submit(base, photo(), "alice")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/client-quota"
    assert refused.json()["jobs"] == 3
    assert int(refused.headers["retry-after"]) >= 1
    assert _submit(base, photo(), "bob").status_code == 202
    after = _refusals(base)
    assert after["all"] - before["all"] == 1
    assert after["alice"] - before["alice"] == 1


def _refusals(base: str) -> dict[str, float]:
    """client-quota refusals counted so far: in all, and of alice (the counters live in this process)."""
    found = {"all": 0.0, "alice": 0.0}
    for line in httpx.get(f"{base}/metrics", headers=_as("alice")).text.splitlines():
        if line.startswith('animegan_rejections_total{reason="client_quota"}'):
            found["all"] = float(line.split()[-1])
        if line.startswith("animegan_client_rejections_total") and 'client="alice"' in line and "client_quota" in line:
            found["alice"] = float(line.split()[-1])
    return found


@pytest.mark.parametrize(("depth", "quota", "refusal"), [(20, 100, 503), (100, 20, 429)])
def test_a_hundred_concurrent_submits_never_pass_a_limit_of_twenty(
    start_api: ApiFactory, redis_url: str, tmp_path: Path, depth: int, quota: int, refusal: int
) -> None:
    base = start_api(
        redis_url=redis_url,
        api_keys_file=_keys_file(tmp_path),
        max_queue_depth=depth,
        max_queued_per_client=quota,
        max_concurrent_uploads=100,
    )
    images = []
    for n in range(100):
        buffer = io.BytesIO()
        Image.new("RGB", (32, 24), (n, 255 - n, 7)).save(buffer, "PNG")
        images.append(buffer.getvalue())

    async def flood() -> list[int]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=100)) as client:
            files = [{"image": ("p.png", data, "image/png")} for data in images]
            answers = await asyncio.gather(
                *(client.post(f"{base}/stylize", files=f, headers=_as("alice")) for f in files)
            )
            return [a.status_code for a in answers]

    statuses = asyncio.run(flood())
    assert statuses.count(202) == 20
    assert statuses.count(refusal) == 80
    with redis.Redis.from_url(redis_url) as client:
        assert client.llen(WAITING_KEY) == 20
        assert client.scard(client_active_key("key:alice")) == 20


def test_the_same_photo_from_two_clients_is_two_jobs_neither_visible_to_the_other(
    start_api: ApiFactory, redis_url: str, tmp_path: Path, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, api_keys_file=_keys_file(tmp_path))
    image = photo()
    mine = _submit(base, image, "alice")
    theirs = _submit(base, image, "bob")
    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json()["id"] != theirs.json()["id"]
    assert "x-deduplicated" not in theirs.headers
    again = _submit(base, image, "alice")  # the same client's repeat is still answered by its job
    assert again.json()["id"] == mine.json()["id"]
    assert again.headers["x-deduplicated"] == "true"
    other = mine.json()["id"]
    for method, path in (("GET", ""), ("GET", "/result"), ("GET", "/events"), ("DELETE", "")):
        answer = httpx.request(method, f"{base}/jobs/{other}{path}", headers=_as("bob"), timeout=10)
        assert answer.status_code == 404, (method, path)
        assert answer.json()["type"] == "/problems/job-not-found"
    # An Idempotency-Key is the client's own too: bob's same key makes bob's job.
    key = {"Idempotency-Key": "order-17"}
    first = httpx.post(f"{base}/stylize", files={"image": ("p.jpg", photo())}, headers={**_as("alice"), **key})
    second = httpx.post(f"{base}/stylize", files={"image": ("p.jpg", photo())}, headers={**_as("bob"), **key})
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]


def test_delete_cancels_a_queued_job_and_frees_its_quota_slot(
    start_api: ApiFactory, redis_url: str, tmp_path: Path, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, api_keys_file=_keys_file(tmp_path), max_queued_per_client=1)
    job_id = _submit(base, photo(), "alice").json()["id"]
    assert _submit(base, photo(), "alice").status_code == 429
    deleted = httpx.delete(f"{base}/jobs/{job_id}", headers=_as("alice"))
    assert deleted.status_code == 204
    assert httpx.get(f"{base}/jobs/{job_id}", headers=_as("alice")).status_code == 404
    with redis.Redis.from_url(redis_url) as client:
        assert client.llen(WAITING_KEY) == 0
    assert _submit(base, photo(), "alice").status_code == 202


def test_delete_refuses_a_job_a_worker_is_running(
    start_api: ApiFactory, redis_url: str, tmp_path: Path, photo: Photo
) -> None:
    base = start_api(redis_url=redis_url, api_keys_file=_keys_file(tmp_path))
    job_id = _submit(base, photo(), "alice").json()["id"]
    with redis.Redis.from_url(redis_url) as client:  # what a worker's claim does
        keys, args = claim_call("host:1", now(), 60.0, 3)
        assert QueueScripts(client).claim(keys=keys, args=args) == [b"claimed", job_id.encode()]
    busy = httpx.delete(f"{base}/jobs/{job_id}", headers=_as("alice"))
    assert busy.status_code == 409
    assert busy.json()["type"] == "/problems/job-running"
    assert int(busy.headers["retry-after"]) >= 1
    assert httpx.get(f"{base}/jobs/{job_id}", headers=_as("alice")).json()["status"] == "running"


def test_delete_releases_a_finished_jobs_result(
    start_api: ApiFactory, worker_redis_url: str, tmp_path: Path, photo: Photo
) -> None:
    base = start_api(redis_url=worker_redis_url, api_keys_file=_keys_file(tmp_path))
    job_id = _submit(base, photo(), "alice").json()["id"]
    with httpx.Client(timeout=30, headers=_as("alice")) as client:
        while (job := client.get(f"{base}/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
            time.sleep(0.05)
        assert job["status"] == "succeeded"
        assert client.get(f"{base}/jobs/{job_id}/result").status_code == 200
        assert client.delete(f"{base}/jobs/{job_id}").status_code == 204
        assert client.get(f"{base}/jobs/{job_id}/result").status_code == 404
        assert client.delete(f"{base}/jobs/{job_id}").status_code == 404
    with redis.Redis.from_url(worker_redis_url) as store:
        assert store.exists(job_key(job_id), result_key(job_id)) == 0
