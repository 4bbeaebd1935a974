"""Security headers on every gateway response (OWASP secure-headers baseline).

Every response gets ``X-Content-Type-Options: nosniff`` (a browser never reinterprets a result or a
problem document as HTML or script). HTML responses also get ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer`` and a Content-Security-Policy unless the route set its own: the
web page (``api/edge/page.py``) and the API docs (``api/edge/docs.py``, assets shipped with the
service) set strict ones; any other HTML gets a fallback that forbids framing, plugins and
``<base>`` rewriting.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTML_FALLBACK_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'none'"


class SecurityHeadersMiddleware:
    """Pure ASGI: adds the headers on ``http.response.start`` without touching bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("X-Frame-Options", "DENY")
                    headers.setdefault("Referrer-Policy", "no-referrer")
                    headers.setdefault("Content-Security-Policy", HTML_FALLBACK_CSP)
                message["headers"] = headers.raw
            await send(message)

        await self.app(scope, receive, send_with_headers)
