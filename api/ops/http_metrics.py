"""HttpMetricsMiddleware: counts and times every request by route template (``api.metrics``)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics


class HttpMetricsMiddleware:
    """Counts and times requests by route template (never the raw path: job ids stay out of labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "other")
            metrics.observe_request(scope["method"], template, status, time.perf_counter() - start)
