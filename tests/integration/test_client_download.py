"""The Python client fetches a result from its presigned link in a real S3 server (SeaweedFS) when the
job has a valid one, and from the gateway otherwise (no link, an expiring one, one the store refuses).

The gateway here is a stand-in (httpx.MockTransport) answering the job body and counting result
requests: what is under test is the client's choice; the link and the store are real.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from animegan.client import AsyncClient, Client, Job
from jobstore.blobs import result_name
from jobstore.objectstore import ObjectStore

STORED = b"\x89PNG stored in the bucket"
FROM_GATEWAY = b"\x89PNG from the gateway"


def job_body(link: str | None, expires_in_s: float) -> dict[str, object]:
    links: dict[str, object] = {"status": "/jobs/job-1", "result": "/jobs/job-1/result"}
    if link is not None:
        links["download"] = link
        links["download_expires_at"] = (datetime.now(UTC) + timedelta(seconds=expires_in_s)).isoformat()
    return {"id": "job-1", "status": "succeeded", "output": {"format": "png"}, "links": links}


class Gateway:
    def __init__(self) -> None:
        self.result_requests = 0
        self.api_keys: list[str | None] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.api_keys.append(request.headers.get("x-api-key"))
        if request.url.path == "/jobs/job-1/result":
            self.result_requests += 1
            return httpx.Response(200, content=FROM_GATEWAY, headers={"content-type": "image/png"})
        return httpx.Response(404)


@pytest.fixture
def link(object_store: ObjectStore) -> str:
    object_store.put(result_name("job-1"), STORED, "image/png")
    return object_store.sign(result_name("job-1"), 600)


@pytest.mark.parametrize(
    ("case", "expected", "gateway_calls"),
    [("valid", STORED, 0), ("none", FROM_GATEWAY, 1), ("expiring", FROM_GATEWAY, 1), ("refused", FROM_GATEWAY, 1)],
)
def test_the_async_client_downloads_from_a_valid_link_and_falls_back_to_the_gateway(
    link: str, case: str, expected: bytes, gateway_calls: int
) -> None:
    urls = {"valid": link, "none": None, "expiring": link, "refused": link.replace("job-1", "job-2")}
    job = Job.from_json(job_body(urls[case], 2 if case == "expiring" else 600))
    gateway = Gateway()

    async def run() -> bytes:
        transport = httpx.MockTransport(gateway.handle)
        async with AsyncClient("http://gateway.test", api_key="k" * 24, transport=transport) as client:
            return await client.result(job)

    assert asyncio.run(run()) == expected
    assert gateway.result_requests == gateway_calls


def test_the_blocking_client_downloads_from_the_link_too(link: str) -> None:
    gateway = Gateway()
    with Client("http://gateway.test", transport=httpx.MockTransport(gateway.handle)) as client:
        assert client.result(Job.from_json(job_body(link, 600))) == STORED
    assert gateway.result_requests == 0
