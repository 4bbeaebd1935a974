"""HEAD answered like GET on every GET route: the same status and headers, no body (RFC 9110 9.3.2).

FastAPI registers ``@router.get`` routes for GET only, so HEAD got 405. ``HeadMiddleware`` runs a
HEAD request as a GET, passes the response's start (status, headers, Content-Length) through and
drops its body. A streamed response (an event stream, a zip) is told its client left as soon as
its headers are out, so it stops at once instead of being computed for nobody.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadMiddleware:
    """Pure ASGI; innermost, so the other middlewares see the request's own method."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        started = False

        async def receive_until_started() -> Message:
            if started:
                return {"type": "http.disconnect"}
            return await receive()

        async def send_head(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                await send(message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            # Bodies are dropped: the server already ended the response above.

        try:
            await self.app(as_get, receive_until_started, send_head)
        finally:
            if "route" in as_get:  # the route template, for the request metrics outside
                scope["route"] = as_get["route"]
