"""The gateway's parts and their connections: built once per app, all closed at shutdown."""

from __future__ import annotations

import pytest

from api.config import ApiSettings
from api.jobs.sender import TaskSender
from api.main import create_app

UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.mark.anyio
async def test_shutdown_closes_the_job_store_client_and_the_celery_producer() -> None:
    app = create_app(ApiSettings(redis_url=UNREACHABLE, broker_url="redis://127.0.0.1:1/1"))
    store = app.state.store
    sender: TaskSender = app.state.sender
    closed: list[str] = []
    original = store.aclose

    async def spy() -> None:
        closed.append("store")
        await original()

    store.aclose = spy
    producer_close = sender.close

    def spy_sender() -> None:
        closed.append("producer")
        producer_close()

    sender.close = spy_sender  # type: ignore[method-assign]
    async with app.router.lifespan_context(app):
        assert closed == []
    assert sorted(closed) == ["producer", "store"]
