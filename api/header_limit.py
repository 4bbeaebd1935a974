"""The request-head size limit of the gateway's HTTP server: 431 past ANIMEGAN_MAX_HEADER_BYTES.

uvicorn's httptools protocol buffers a request's line and headers without any bound (a 64 MiB
header was read whole), and its h11 protocol answers an oversized head with a bare 400.
``HeaderLimitedProtocol`` is the httptools protocol counting the bytes of each request head as
they arrive: once a head that is still incomplete passes the limit, the client gets 431
``headers-too-large`` (a problem document) and the connection is closed, having buffered at most
the limit plus one read. Every launcher selects it: ``animegan api`` (the container's command),
``animegan serve`` (``--http api.header_limit:HeaderLimitedProtocol``), and anyone starting
uvicorn by hand should pass that same ``--http`` option.
"""

from __future__ import annotations

import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api import metrics
from api.config import load_api_settings
from api.problems import ApiError, problem_response

# What `python -m uvicorn --http ...` and uvicorn.run(http=...) are given.
PROTOCOL_PATH = "api.header_limit:HeaderLimitedProtocol"


@functools.cache
def max_header_bytes() -> int:
    """ANIMEGAN_MAX_HEADER_BYTES of this process (read once: the protocol is made per connection)."""
    return load_api_settings().max_header_bytes


def refusal(limit: int) -> bytes:
    """The whole 431 answer, as bytes on the wire."""
    error = ApiError("headers-too-large", f"The request line and headers are over the {limit:,}-byte limit.")
    response = problem_response(error, instance="", request_id=None, extra_headers={"Connection": "close"})
    head = [STATUS_LINE[431]]
    head += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
    return b"".join(head) + b"\r\n" + bytes(response.body)


class HeaderLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on each request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limit = max_header_bytes()
        self._raw = 0  # bytes received while the current head is incomplete (bounds a head still arriving)
        self._parsed = 0  # the current head's line and headers as parsed (judges a head that arrived whole)
        self._in_body = False
        self._over = False

    def data_received(self, data: bytes) -> None:
        if self._over:
            return
        if not self._in_body:
            self._raw += len(data)
        super().data_received(data)
        if self._over or (not self._in_body and self._raw > self._limit):
            self._refuse()

    def on_message_begin(self) -> None:
        self._parsed = 16  # the request line's method, version, spaces and CRLF
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._parsed > self._limit or self._over:
            self._over = True  # no ASGI task: refused once this read is parsed
            return
        self._in_body, self._raw = True, 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._over:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        if not self._over:
            super().on_message_complete()

    def _refuse(self) -> None:
        self._over = True
        if self.transport.is_closing():
            return
        metrics.observe_rejection("headers-too-large")
        self.logger.warning("request head over %d bytes refused (431)", self._limit)
        self.transport.write(refusal(self._limit))
        self.transport.close()
