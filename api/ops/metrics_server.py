"""/metrics on a port of its own (ANIMEGAN_API_METRICS_PORT), served by the gateway process itself.

A second uvicorn server runs in the gateway's event loop for the app's lifetime, with an app that
has the /metrics route only and shares the gateway's settings and job store client (so a scrape
reads Redis the same way). The socket is bound with SO_REUSEPORT: with ``--workers N`` every
gateway process binds the same port and the kernel hands each scrape to one of them, which
answers for all of them through PROMETHEUS_MULTIPROC_DIR. The port needs no API key: it belongs on an internal network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from fastapi import FastAPI

from api.ops.scrape import router as scrape_router

logger = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the signals to the main server of the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def metrics_app(main: FastAPI) -> FastAPI:
    """An app with only GET /metrics, sharing ``main``'s settings and job store client."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = main.state.settings
    app.state.store = main.state.store
    app.include_router(scrape_router)
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket shared by every gateway process of this host (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(
            f"animegan api: cannot listen on {host}:{port} for ANIMEGAN_API_METRICS_PORT: {exc.strerror}"
        ) from None
    sock.listen(64)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serving_metrics(main: FastAPI, host: str, port: int) -> AsyncIterator[None]:
    """Serve ``metrics_app(main)`` on ``host:port`` while the context is open."""
    sock = bind(host, port)
    # log_config=None: the gateway's logging is already configured; uvicorn must not replace it.
    config = uvicorn.Config(metrics_app(main), lifespan="off", log_config=None, access_log=False)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve([sock]))
    logger.info("metrics served on %s:%d", host, port)
    try:
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()
