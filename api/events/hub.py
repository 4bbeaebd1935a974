"""The gateway process's one Redis pub/sub connection, shared by all of its event streams.

Every state change of a job is PUBLISHed on ``events_channel(job_id)`` by the job store, in the
same pipeline as the change. ``EventHub.follow(job_id)`` subscribes this process to that channel
while at least one stream follows the job (unsubscribing when the last one leaves) and hands the
stream a ``Feed``: a bounded, coalescing notice "the job changed, read it again". A message says
only that something changed; the stream re-reads the record, so a notice too many costs one
HGETALL and a notice too few cannot happen while the connection lives.

``follow`` returns only after Redis has confirmed the subscription, so a stream that reads the
job after that sees every later change. When the connection drops (Redis restarted), the hub
opens a new one, subscribes to every followed channel again and, once Redis confirms, notifies
every stream once: a message lost in the gap is covered by that re-read. If Redis stays away for
``reconnect_window_s`` the hub gives up: every feed is marked lost and its stream ends (clients
reconnect and get 503 while Redis is down). The connection opens on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import redis.asyncio
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from api.config import ApiSettings
from api.events.slots import StreamSlots
from jobstore.keys import events_channel

logger = logging.getLogger(__name__)


def _close(pubsub: PubSub) -> Awaitable[None]:
    """``pubsub.aclose()``, typed the same whichever redis-py is installed.

    redis-py types ``PubSub.aclose`` from 8.2 on and leaves it untyped before; a call through an
    annotated reference is checked as typed under both, where a ``type: ignore`` is wrong for one.
    """
    aclose: Callable[[], Awaitable[None]] = pubsub.aclose
    return aclose()


# Failures of the pub/sub connection; the hub replaces the connection on any of them.
CONNECTION_ERRORS = (RedisError, OSError, RuntimeError)


class Feed:
    """What one stream hears from the hub: "read the job again" notices, and whether the hub gave up."""

    def __init__(self) -> None:
        # One pending notice already means "re-read", so a buffer of one loses nothing.
        self._send, self._receive = anyio.create_memory_object_stream[None](1)
        self.lost = False

    def notify(self) -> None:
        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait(None)

    def lose(self) -> None:
        self.lost = True
        self.notify()

    async def wait(self, timeout_s: float) -> bool:
        """True when a notice arrived within ``timeout_s`` (it is consumed), False when the time ran out."""
        with anyio.move_on_after(max(0.0, timeout_s)):
            await self._receive.receive()
            return True
        return False

    def close(self) -> None:
        self._send.close()
        self._receive.close()


@dataclass
class _Channel:
    feeds: set[Feed] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # Redis confirmed the subscription
    resync: bool = False  # notify every feed once the subscription is confirmed (again)


class EventHub:
    """Subscriptions of this process's event streams, on one pub/sub connection (plus the stream caps)."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        reconnect_window_s: float = 5.0,
        idle_ping_s: float = 15.0,
        subscribe_timeout_s: float = 5.0,
    ) -> None:
        self.slots = StreamSlots(settings.max_event_streams, settings.max_event_streams_per_client)
        self.reconnect_window_s = reconnect_window_s
        self.idle_ping_s = idle_ping_s
        self.subscribe_timeout_s = subscribe_timeout_s
        # No hidden retries: the hub notices every reconnect itself, since a reconnect can lose messages.
        self._client = redis.asyncio.Redis.from_url(
            settings.redis_url, socket_connect_timeout=3, socket_timeout=10, retry=Retry(NoBackoff(), 0)
        )
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._channels: dict[str, _Channel] = {}
        # SUBSCRIBEs sent on the current connection and not yet confirmed, per channel name.
        self._unconfirmed: Counter[str] = Counter()

    @property
    def channels(self) -> int:
        """Channels this process is subscribed to (jobs followed by at least one stream)."""
        return len(self._channels)

    @contextlib.asynccontextmanager
    async def follow(self, job_id: str) -> AsyncIterator[Feed]:
        """Subscribe to the job's changes; enters once Redis confirmed (RedisError/TimeoutError if not)."""
        name = events_channel(job_id)
        feed = Feed()
        channel = await self._join(name, feed)
        try:
            with anyio.fail_after(self.subscribe_timeout_s):
                await channel.ready.wait()
            yield feed
        finally:
            # Shielded: a disconnecting client cancels the stream, and the channel must still be left.
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.subscribe_timeout_s):
                await self._leave(name, channel, feed)
            feed.close()

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for channel in self._channels.values():
            for feed in channel.feeds:
                feed.lose()
        self._channels.clear()
        if self._pubsub is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await _close(self._pubsub)
            self._pubsub = None
        await self._client.aclose()

    async def _join(self, name: str, feed: Feed) -> _Channel:
        async with self._lock:
            if self._reader is None or self._reader.done():
                if self._pubsub is not None:
                    await self._drop(self._pubsub)  # left by a reader that died of a bug
                await self._open()  # Redis down: RedisError, the route answers 503
                # A context of its own: the task outlives this request and must not log under its id.
                self._reader = asyncio.create_task(
                    self._read_forever(), name="animegan-event-hub", context=contextvars.Context()
                )
            channel = self._channels.get(name)
            if channel is None:
                channel = self._channels[name] = _Channel()
                await self._subscribe(name)
            channel.feeds.add(feed)
            return channel

    async def _leave(self, name: str, channel: _Channel, feed: Feed) -> None:
        async with self._lock:
            channel.feeds.discard(feed)
            # After a give-up or a quick re-join the name may belong to a newer channel: leave that alone.
            if channel.feeds or self._channels.get(name) is not channel:
                return
            del self._channels[name]
            pubsub = self._pubsub
            if pubsub is not None:
                try:
                    await pubsub.unsubscribe(name)
                except CONNECTION_ERRORS:
                    await self._drop(pubsub)

    async def _subscribe(self, name: str) -> None:
        """SUBSCRIBE on the current connection (under the lock); without one, the reconnect does it."""
        pubsub = self._pubsub
        if pubsub is None:
            return
        self._unconfirmed[name] += 1
        try:
            await pubsub.subscribe(name)
        except CONNECTION_ERRORS:
            await self._drop(pubsub)

    async def _open(self) -> None:
        """A fresh connection subscribed to every followed channel (under the lock)."""
        pubsub = self._client.pubsub()
        try:
            await pubsub.connect()  # type: ignore[no-untyped-call]
            self._unconfirmed.clear()
            for name, channel in self._channels.items():
                self._unconfirmed[name] += 1
                channel.resync = True
            if self._channels:
                await pubsub.subscribe(*self._channels)
        except BaseException:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await _close(pubsub)
            raise
        self._pubsub = pubsub

    async def _drop(self, pubsub: PubSub) -> None:
        """Forget a broken connection; the reader task opens the next one."""
        if self._pubsub is not pubsub:
            return
        self._pubsub = None
        for channel in self._channels.values():
            channel.ready.clear()
        with contextlib.suppress(*CONNECTION_ERRORS):
            await _close(pubsub)  # wakes the reader if it is blocked on this connection

    async def _read_forever(self) -> None:
        try:
            await self._read_messages()
        except Exception:
            logger.exception("event hub reader failed; the next stream starts a new one")
            raise

    async def _read_messages(self) -> None:
        awaiting_pong = False
        while True:
            pubsub = self._pubsub
            if pubsub is None:
                if not await self._reconnect():
                    return
                awaiting_pong = False
                continue
            try:
                message = await pubsub.get_message(timeout=self.idle_ping_s)
                if message is None:
                    # Silence: a PING must come back before the next timeout, or the connection is dead.
                    if awaiting_pong:
                        raise ConnectionError("no answer to PING on the pub/sub connection")
                    await pubsub.ping()
                    awaiting_pong = True
                    continue
            except CONNECTION_ERRORS as exc:
                logger.warning("event hub lost its Redis connection: %s", type(exc).__name__)
                async with self._lock:
                    await self._drop(pubsub)
                continue
            awaiting_pong = False
            self._dispatch(message)

    async def _reconnect(self) -> bool:
        """Open a new connection within the reconnect window; on failure every feed is lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_window_s
        delay = 0.05
        while True:
            try:
                async with self._lock:
                    if self._pubsub is None:
                        await self._open()
                logger.info("event hub reconnected", extra={"channels": len(self._channels)})
                return True
            except CONNECTION_ERRORS:
                if loop.time() + delay > deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        logger.warning("event hub could not reach Redis; ending its event streams")
        async with self._lock:
            for channel in self._channels.values():
                for feed in channel.feeds:
                    feed.lose()
            self._channels.clear()
            self._unconfirmed.clear()
            self._reader = None  # the next stream opens a connection and a reader again
        return False

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        raw = message.get("channel")
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        channel = self._channels.get(name)
        if kind == "message":
            if channel is not None:
                for feed in channel.feeds:
                    feed.notify()
        elif kind == "subscribe":
            self._confirmed(name, channel)

    def _confirmed(self, name: str, channel: _Channel | None) -> None:
        if self._unconfirmed[name] > 0:
            self._unconfirmed[name] -= 1
        elif channel is not None:
            # A confirmation nobody asked for: the client library resubscribed by itself after a
            # reconnect, so messages may have been missed in between.
            channel.resync = True
        if self._unconfirmed[name] > 0:
            return
        del self._unconfirmed[name]
        if channel is None:
            return
        channel.ready.set()
        if channel.resync:
            channel.resync = False
            for feed in channel.feeds:
                feed.notify()
