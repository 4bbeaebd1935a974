"""What every event stream shares: its timing, its slot and pub/sub feeds, the key check, its last word.

``StreamLimits`` and ``EventHub`` are dependencies (``get_stream_limits``, ``get_event_hub``), so
tests can shorten a stream's life or swap the hub. ``claim_slot`` takes the stream's slot before
it starts (429 ``too-many-streams`` past the caps). ``KeyWatch`` asks every ``KEY_RECHECK_S``
whether the stream's API key was revoked. A stream whose subject is gone ends with an
``expired`` event carrying a problem document built by ``api.problems``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.sse import ServerSentEvent

from api import metrics
from api.events.hub import EventHub
from api.problems import ApiError, problem_document
from api.tenancy.auth import KEY_RECHECK_S, key_revoked
from api.tenancy.clients import ClientIdentity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamLimits:
    """Timing of one event stream (a dependency, so tests can shorten it)."""

    # Queue positions move without a message; a browser should see "you are next" within seconds.
    position_refresh_s: float = 2.0
    heartbeat_s: float = 10.0
    max_duration_s: float = 300.0
    # Sent as the stream's ``retry:`` field: how long EventSource waits before reconnecting.
    reconnect_ms: int = 2000


def get_stream_limits() -> StreamLimits:
    return StreamLimits()


def get_event_hub(request: Request) -> EventHub:
    """The process's pub/sub connection and stream caps (built once per app by ``api.main``)."""
    hub: EventHub = request.app.state.event_hub
    return hub


StreamLimitsDep = Annotated[StreamLimits, Depends(get_stream_limits)]
EventHubDep = Annotated[EventHub, Depends(get_event_hub)]


@contextmanager
def claim_slot(hub: EventHub, client: ClientIdentity) -> Iterator[None]:
    """Hold one of the hub's stream slots for ``client`` (429 ``too-many-streams``, counted, if none is left)."""
    try:
        hub.slots.claim(client.id)
    except ApiError as exc:
        metrics.observe_rejection(exc.slug, client=client.label)
        raise
    try:
        yield
    finally:
        hub.slots.release(client.id)


class KeyWatch:
    """Asks every KEY_RECHECK_S whether the stream's key was revoked (then the stream ends)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.check_at = anyio.current_time() + KEY_RECHECK_S

    def now(self) -> bool:
        """True once the key is revoked (asked when a check is due)."""
        if anyio.current_time() < self.check_at:
            return False
        self.check_at = anyio.current_time() + KEY_RECHECK_S
        if key_revoked(self.request):
            logger.info("API key revoked; ending the event stream", extra={"path": self.request.url.path})
            return True
        return False


def expired_event(error: ApiError, instance: str) -> ServerSentEvent:
    """The last event of a stream whose job or batch disappeared while it was followed."""
    return ServerSentEvent(event="expired", data=problem_document(error, instance=instance))
