"""Gateway logging: text or JSON lines carrying ``request_id`` (formatters in ``telemetry.logs``).

``RequestIdMiddleware`` takes the client's ``X-Request-ID`` when it is sane or makes one, puts it
in a context variable for every log line of the request, in ``request.state`` for problem bodies,
and echoes it in the response header.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from telemetry.logs import configure, request_id_var

REQUEST_ID_HEADER = "x-request-id"
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def configure_logging(log_format: str, level: str) -> None:
    """One stderr handler on the root logger; uvicorn's loggers propagate to it."""
    configure(log_format, level, context=request_id_var, text_format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class RequestIdMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware), so the context variable reaches the route handlers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _SANE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
