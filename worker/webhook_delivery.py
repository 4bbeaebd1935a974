"""One webhook attempt: re-check the callback's host, sign the body, POST it to the checked address.

SSRF at delivery time: the host is resolved again before every attempt and refused if any address
breaks ``jobstore.callback_policy`` (unless ANIMEGAN_WEBHOOK_ALLOW_PRIVATE). The request then goes
to the address that was checked, never to a second resolution: the URL's host is replaced by that
address, the ``Host`` header keeps the name, and for https the TLS handshake sends the name as SNI
and verifies the certificate against it (httpcore's ``sni_hostname`` extension). Connections are
not pooled (a TLS connection opened for one name is never reused for another on the same
address), proxies from the environment are ignored, and redirects are not followed (a 3xx is a
failed attempt).

Bounds: an attempt has a wall-clock deadline, ANIMEGAN_WEBHOOK_TIMEOUT_S from the moment the POST
starts (httpx times each read, so a receiver trickling a byte at a time would otherwise hold the
attempt for ever): when it passes, the connection's socket is shut down under whatever read or
write is blocked, and the attempt fails. The deadline is well inside the delivery's lease
(``WorkerSettings.webhook_lease_s``), so the lease never ends while the POST is open and no
delivery is POSTed twice at once. Only the status matters: at most ``ANSWER_READ_LIMIT`` bytes of
the answer's body are read, the rest is left unread and the connection closed.

Signature: ``Animegan-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any

import httpx

from jobstore.callback_policy import (
    CallbackRefused,
    CallbackTarget,
    IPAddress,
    check_addresses,
    parse_addresses,
    parse_callback_url,
)
from jobstore.webhooks import Delivery
from worker.config import WorkerSettings

logger = logging.getLogger(__name__)

USER_AGENT = "animegan-webhooks/1"
# Bytes of an answer's body read before the connection is closed (the status is all that counts).
ANSWER_READ_LIMIT = 4096

# host, port -> its addresses; raises OSError when it does not resolve.
Resolver = Callable[[str, int], list[IPAddress]]


class Outcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # worth another try: no answer, a non-2xx answer, a name that does not resolve
    REFUSED = "refused"  # the policy forbids the host's address: never sent, never retried


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    status: int | None = None
    error: str = ""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``Animegan-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def resolve_host(host: str, port: int) -> list[IPAddress]:
    return parse_addresses(list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


class WebhookPoster:
    """Makes attempts; thread-safe (the sender's threads share one)."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        resolver: Resolver = resolve_host,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if settings.webhook_secret is None:
            raise ValueError("webhooks need ANIMEGAN_WEBHOOK_SECRET")
        self.settings = settings
        self.secret = settings.webhook_secret.get_secret_value().encode()
        self.resolver = resolver
        # getaddrinfo has no timeout of its own: a resolution that hangs is abandoned to this pool.
        self._resolving = ThreadPoolExecutor(max_workers=settings.webhook_concurrency, thread_name_prefix="resolve")
        self.client = httpx.Client(
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            transport=transport,
        )

    def close(self) -> None:
        self.client.close()
        self._resolving.shutdown(wait=False, cancel_futures=True)

    def post(self, delivery: Delivery, body: bytes) -> AttemptResult:
        """One attempt; never raises for what the receiver or its DNS does."""
        try:
            target = parse_callback_url(delivery.url)
            address = self._checked_address(target)
        except CallbackRefused as exc:
            return AttemptResult(Outcome.REFUSED, error=str(exc))
        except OSError as exc:
            return AttemptResult(Outcome.FAILED, error=f"the host does not resolve ({exc})")
        request = self._request(target, address, delivery, body)
        timeout_s = self.settings.webhook_timeout_s
        with AttemptDeadline(timeout_s) as deadline:
            request.extensions = {**request.extensions, "trace": deadline.trace}
            try:
                response = self.client.send(request, stream=True)
                try:
                    _read_some(response, ANSWER_READ_LIMIT)
                finally:
                    response.close()
            except httpx.HTTPError as exc:
                if deadline.expired:
                    return AttemptResult(Outcome.FAILED, error=f"no complete answer within {timeout_s:g} s")
                return AttemptResult(Outcome.FAILED, error=f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= response.status_code < 300:
            return AttemptResult(Outcome.DELIVERED, status=response.status_code)
        return AttemptResult(Outcome.FAILED, status=response.status_code, error=f"HTTP {response.status_code}")

    def _checked_address(self, target: CallbackTarget) -> IPAddress:
        literal = target.literal_address
        if literal is not None:
            addresses = [literal]
        else:
            future = self._resolving.submit(self.resolver, target.host, target.port)
            try:
                addresses = future.result(timeout=self.settings.webhook_resolve_timeout_s)
            except FutureTimeout:
                raise OSError(f"no answer within {self.settings.webhook_resolve_timeout_s:g} s") from None
        if not self.settings.webhook_allow_private:
            check_addresses(target.host, addresses)
        if not addresses:
            raise OSError("no address")
        return addresses[0]

    def _request(self, target: CallbackTarget, address: IPAddress, delivery: Delivery, body: bytes) -> httpx.Request:
        url = httpx.URL(target.url).copy_with(host=str(address))
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Animegan-Event": delivery.event.value,
            "Animegan-Delivery": delivery.id,
            "Animegan-Signature": sign(self.secret, int(time.time()), body),
        }
        extensions = (
            {"sni_hostname": target.host} if target.scheme == "https" and target.literal_address is None else {}
        )
        return self.client.build_request("POST", url, headers=headers, content=body, extensions=extensions)


def _read_some(response: httpx.Response, limit: int) -> None:
    """Read at most about ``limit`` bytes of the body as it streams in; the rest is never read."""
    if response.is_stream_consumed:  # the body was in memory already (a transport that is not the network)
        return
    read = 0
    for chunk in response.iter_raw(chunk_size=limit):
        read += len(chunk)
        if read >= limit:
            return


class AttemptDeadline:
    """A wall-clock deadline for one attempt: when it passes, the attempt's sockets are shut down.

    ``trace`` is an httpx ``trace`` extension: it learns each socket the attempt connects.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> AttemptDeadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event != "connection.connect_tcp.complete":
            return
        sock = info["return_value"].get_extra_info("socket")
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _cut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _cut(sock)


def _cut(sock: socket.socket) -> None:
    # shutdown, not close: the blocked read returns at once and httpx closes the socket as usual.
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
