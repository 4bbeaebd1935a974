"""api.events.hub.EventHub on real Redis: fan-out per job, and an idle connection kept alive by PINGs."""

from __future__ import annotations

import contextlib

import anyio
import pytest
import redis.asyncio

from api.config import ApiSettings
from api.events.hub import EventHub
from jobstore.keys import events_channel
from jobstore.records import new_job_id

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio runs on asyncio only


async def pubsub_client_ids(client: redis.asyncio.Redis, db: int) -> list[str]:
    """Pub/sub clients on ``db`` (the server is shared: the session's Celery worker subscribes too)."""
    return [c["id"] for c in await client.client_list(_type="pubsub") if int(c["db"]) == db]


async def test_a_change_reaches_every_follower_of_that_job_and_no_other(redis_url: str) -> None:
    hub = EventHub(ApiSettings(redis_url=redis_url))
    job, other = new_job_id(), new_job_id()
    async with redis.asyncio.Redis.from_url(redis_url) as client, contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(hub.follow(job))
        second = await stack.enter_async_context(hub.follow(job))
        bystander = await stack.enter_async_context(hub.follow(other))
        assert hub.channels == 2
        assert await client.publish(events_channel(job), "running") == 1  # one connection, one subscriber
        assert await first.wait(2.0)
        assert await second.wait(2.0)
        assert not await bystander.wait(0.3)
        # Notices coalesce: three changes before the stream looks are one "read again".
        for state in ("running", "succeeded", "failed"):
            await client.publish(events_channel(job), state)
        await anyio.sleep(0.2)
        assert await first.wait(0.1)
        assert not await first.wait(0.1)
    assert hub.channels == 0
    await hub.aclose()


async def test_an_idle_connection_is_pinged_and_kept(redis_url: str) -> None:
    hub = EventHub(ApiSettings(redis_url=redis_url), idle_ping_s=0.2)
    job, db = new_job_id(), int(redis_url.rsplit("/", 1)[1])
    async with redis.asyncio.Redis.from_url(redis_url) as client, hub.follow(job) as feed:
        before = await pubsub_client_ids(client, db)
        assert len(before) == 1
        assert not await feed.wait(1.5)  # several silent ping rounds
        assert await pubsub_client_ids(client, db) == before, "an answered PING must not cost a reconnect"
        await client.publish(events_channel(job), "running")
        assert await feed.wait(2.0)
        assert not feed.lost
    await hub.aclose()
