"""The webhook sender against hostile receivers: real sockets, the real sender process
(``python -m worker.webhooks``, four threads) and real Redis.

- A receiver that trickles its answer a byte at a time holds an attempt only until the attempt's
  wall-clock deadline (ANIMEGAN_WEBHOOK_TIMEOUT_S), never into a second POST of the same delivery,
  and four of them at once do not keep another client's webhook waiting.
- A receiver answering 200 with a 400 MB body: the status counts, the body is not read.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from PIL import Image

from jobstore.keys import webhook_key
from jobstore.records import JobRecord
from jobstore.webhooks import WebhookEvent, add_schedule_webhook

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-webhook-secret-limits-0123"
TIMEOUT_S = 2.0
MiB = 2**20


@dataclass
class Connection:
    delivery: str
    opened: float
    closed: float | None = None
    sent: int = 0


@dataclass
class Receiver:
    """A socket server answering every POST the way ``mode`` says: ``ok``, ``trickle`` or ``flood``."""

    mode: str
    connections: list[Connection] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := conn.recv(65536)):
                head += chunk
            raw_head, _, body = head.partition(b"\r\n\r\n")
            headers = {}
            for line in raw_head.decode().split("\r\n")[1:]:
                name, _, value = line.partition(": ")
                headers[name.lower()] = value
            while len(body) < int(headers.get("content-length", "0")):
                body += conn.recv(65536)
            record = Connection(headers.get("animegan-delivery", ""), time.monotonic())
            with self.lock:
                self.connections.append(record)
            with contextlib.suppress(OSError):
                self._answer(conn, record)
            record.closed = time.monotonic()

    def _answer(self, conn: socket.socket, record: Connection) -> None:
        if self.mode == "ok":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        if self.mode == "flood":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 400000000\r\n\r\n")
            block = b"\x00" * MiB
            while record.sent < 400 * MiB:
                conn.sendall(block)
                record.sent += len(block)
            return
        # trickle: an answer that never completes, one byte every 0.3 s, until the sender hangs up
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
            conn.sendall(bytes([byte]))
            record.sent += 1
            time.sleep(0.3)

    def open_count(self) -> int:
        with self.lock:
            return sum(1 for c in self.connections if c.closed is None)


@pytest.fixture
def receivers() -> Iterator[Callable[[str], Receiver]]:
    servers: list[socket.socket] = []

    def start(mode: str) -> Receiver:
        server = socket.create_server(("127.0.0.1", 0), backlog=32)
        servers.append(server)
        receiver = Receiver(mode, port=server.getsockname()[1])
        threading.Thread(target=receiver.serve, args=(server,), daemon=True).start()
        return receiver

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def sender(
    redis_url: str, service_env: Callable[..., dict[str, str]], tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = service_env(
        ANIMEGAN_REDIS_URL=redis_url,
        ANIMEGAN_WEBHOOK_SECRET=SECRET,
        ANIMEGAN_WEBHOOK_ALLOW_PRIVATE="true",
        ANIMEGAN_WEBHOOK_POLL_INTERVAL_S="0.1",
        ANIMEGAN_WEBHOOK_TIMEOUT_S=str(TIMEOUT_S),
        ANIMEGAN_WEBHOOK_RESOLVE_TIMEOUT_S="1",
        ANIMEGAN_WEBHOOK_CONCURRENCY="4",
        ANIMEGAN_WEBHOOK_RETRY_SCHEDULE_S="0,600",
    )
    with (tmp_path / "sender.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "worker.webhooks"], env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def schedule(url: str, queue_job: Callable[..., JobRecord], callback_url: str) -> str:
    """A queued job with ``callback_url`` and its job.succeeded delivery, due now; the delivery id."""
    with redis.Redis.from_url(url) as client:
        record = queue_job(client, Image.new("RGB", (32, 24), (9, 99, 199)), ttl_s=300)
        pipe = client.pipeline()
        delivery = add_schedule_webhook(
            pipe, record.model_copy(update={"callback_url": callback_url}), WebhookEvent.JOB_SUCCEEDED
        )
        pipe.execute()
    assert delivery is not None
    return delivery


def delivery_state(url: str, delivery: str) -> dict[str, str]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        return {k: v for k, v in client.hgetall(webhook_key(delivery)).items() if k != "body"}


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_trickling_receivers_hold_a_slot_only_until_the_deadline_and_others_are_served_meanwhile(
    redis_url: str,
    sender: subprocess.Popen[bytes],
    receivers: Callable[[str], Receiver],
    queue_job: Callable[..., JobRecord],
) -> None:
    slow, fast = receivers("trickle"), receivers("ok")
    slow_ids = [schedule(redis_url, queue_job, slow.url(f"/slow/{n}")) for n in range(4)]
    wait_until(lambda: slow.open_count() == 4, 15, "the four slow deliveries never occupied the four threads")
    asked_at = time.monotonic()
    schedule(redis_url, queue_job, fast.url())
    wait_until(lambda: len(fast.connections) == 1, 10, "another client's webhook waited behind the slow ones")
    waited = fast.connections[0].opened - asked_at
    wait_until(lambda: slow.open_count() == 0, 10, "a slow attempt outlived its deadline")

    assert waited < TIMEOUT_S + 2.0
    for connection in slow.connections:
        assert connection.closed is not None
        assert connection.closed - connection.opened < TIMEOUT_S + 1.5  # the receiver was still trickling
    assert sorted(c.delivery for c in slow.connections) == sorted(slow_ids)  # one POST each, never two at once
    for delivery in slow_ids:
        state = delivery_state(redis_url, delivery)
        assert state["state"] == "pending"  # tried again later, on the retry schedule
        assert state["last_error"] == f"no complete answer within {TIMEOUT_S:g} s"


def test_a_400_mb_answer_is_not_read_and_the_sender_stays_small(
    redis_url: str,
    sender: subprocess.Popen[bytes],
    receivers: Callable[[str], Receiver],
    queue_job: Callable[..., JobRecord],
) -> None:
    flood = receivers("flood")
    delivery = schedule(redis_url, queue_job, flood.url())
    wait_until(lambda: delivery_state(redis_url, delivery).get("state") == "delivered", 30, "not delivered")
    wait_until(lambda: flood.open_count() == 0, 10, "the sender kept reading the answer")
    peak_mib = _peak_rss_mib(sender.pid)
    sent_mib = flood.connections[0].sent / MiB
    print(f"\nwebhook sender peak RSS after a 400 MB answer: {peak_mib:.0f} MiB; receiver sent {sent_mib:.0f} MiB")
    assert flood.connections[0].sent < 64 * MiB
    assert peak_mib < 150


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")
