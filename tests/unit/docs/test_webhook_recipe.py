"""The receiver recipe of docs/guides/webhooks.md, run as printed, against the workers' own sender.

The page's Python block is executed, its server started on a loopback port, and deliveries are
POSTed to it by ``worker.webhook_delivery.WebhookPoster`` (the code that sends real webhooks): a
signed delivery is accepted once, its retry acknowledged without acting twice, a delivery signed
with another secret refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jobstore.webhooks import Delivery, WebhookEvent
from worker.config import WorkerSettings
from worker.webhook_delivery import Outcome, WebhookPoster

PAGE = Path(__file__).resolve().parents[3] / "docs" / "guides" / "webhooks.md"
SECRET = "a-secret-of-the-service-0123456789"


def _recipe() -> str:
    section = PAGE.read_text().split("## A receiver", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert found, "no Python block under 'A receiver'"
    return found.group(1)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, Any]], dict[str, Any]]]:
    """The recipe's server on a free loopback port: (its URL, what its handle() saw, its namespace)."""
    namespace: dict[str, Any] = {"__name__": "webhook_recipe"}
    exec(compile(_recipe(), str(PAGE), "exec"), namespace)
    handled: list[tuple[str, Any]] = []
    namespace["SECRET"] = SECRET.encode()
    namespace["handle"] = lambda event, body: handled.append((event, body))
    server = ThreadingHTTPServer(("127.0.0.1", 0), namespace["Receiver"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", handled, namespace
    finally:
        server.shutdown()
        thread.join(10)


def _poster(secret: str) -> WebhookPoster:
    return WebhookPoster(WorkerSettings(webhook_secret=secret, webhook_allow_private=True, webhook_timeout_s=5))


def _delivery(url: str, delivery_id: str) -> Delivery:
    return Delivery(
        id=delivery_id,
        event=WebhookEvent.JOB_SUCCEEDED,
        url=url,
        job_id="job-1",
        attempt=0,
        created_at=time.time(),
        token="t",
    )


def test_the_recipe_accepts_a_signed_delivery_once(
    receiver: tuple[str, list[tuple[str, Any]], dict[str, Any]],
) -> None:
    url, handled, _ = receiver
    body = json.dumps({"id": "job-1", "status": "succeeded"}).encode()
    poster = _poster(SECRET)
    try:
        first = poster.post(_delivery(url, "d-1"), body)
        retry = poster.post(_delivery(url, "d-1"), body)  # the same delivery again, as a retry sends it
    finally:
        poster.close()
    assert (first.outcome, first.status) == (Outcome.DELIVERED, 204)
    assert (retry.outcome, retry.status) == (Outcome.DELIVERED, 204)
    assert handled == [("job.succeeded", {"id": "job-1", "status": "succeeded"})]


def test_the_recipe_refuses_a_delivery_signed_with_another_secret(
    receiver: tuple[str, list[tuple[str, Any]], dict[str, Any]],
) -> None:
    url, handled, _ = receiver
    poster = _poster("another-secret-entirely-0123456789")
    try:
        result = poster.post(_delivery(url, "d-2"), b'{"id": "job-1", "status": "succeeded"}')
    finally:
        poster.close()
    assert (result.outcome, result.status) == (Outcome.FAILED, 401)
    assert handled == []


def test_the_recipes_verify_refuses_old_and_malformed_signatures(
    receiver: tuple[str, list[tuple[str, Any]], dict[str, Any]],
) -> None:
    _, _, namespace = receiver
    verify = namespace["verify"]
    body = b"{}"
    old = int(time.time()) - 301
    signature = hmac.new(SECRET.encode(), f"{old}.".encode() + body, hashlib.sha256).hexdigest()
    assert not verify(SECRET.encode(), f"t={old},v1={signature}", body)
    assert not verify(SECRET.encode(), "t=soon,v1=abc", body)
    assert not verify(SECRET.encode(), "", body)
