"""The gateway's parts and their connections: built once per app, all closed at shutdown."""

from __future__ import annotations

import pytest

from api.config import ApiSettings
from api.gateway import Gateway
from api.main import create_app

UNREACHABLE = "redis://127.0.0.1:1/0"


def test_one_redis_client_serves_store_and_broker_when_they_are_the_same() -> None:
    app = create_app(ApiSettings(redis_url=UNREACHABLE))
    gateway: Gateway = app.state.gateway
    assert gateway.broker_redis is gateway.redis


@pytest.mark.anyio
async def test_shutdown_closes_the_store_and_the_separate_broker_client_of_the_metrics_scrape() -> None:
    app = create_app(ApiSettings(redis_url=UNREACHABLE, broker_url="redis://127.0.0.1:1/1"))
    gateway: Gateway = app.state.gateway
    assert gateway.broker_redis is not gateway.redis
    closed: list[str] = []
    for name, client in (("store", gateway.redis), ("broker", gateway.broker_redis)):
        original = client.aclose

        async def spy(name: str = name, original=original) -> None:  # type: ignore[no-untyped-def]
            closed.append(name)
            await original()

        client.aclose = spy  # type: ignore[method-assign]
    async with app.router.lifespan_context(app):
        assert closed == []
    assert sorted(closed) == ["broker", "store"]
