"""How many event streams a gateway process keeps open: in all, and per client.

Each open ``GET /jobs/{id}/events`` holds a slot from the moment it is admitted until it ends or
its client disconnects. Counting happens in this process only (a stream is a connection to this
process, so that is what it costs); several gateway processes each enforce their own caps.
Beyond either cap the request is refused with 429 ``too-many-streams`` before any stream starts.
"""

from __future__ import annotations

from collections import Counter

from api import metrics
from api.problems import ApiError

# Streams end within their lifetime (5 min) and clients close them on completion; a few seconds
# is a fair first wait, and EventSource does not retry a 429 by itself anyway.
RETRY_AFTER_S = 5


class StreamSlots:
    """Counts open streams per client id; ``claim`` refuses beyond the caps, ``release`` frees."""

    def __init__(self, max_streams: int, max_per_client: int) -> None:
        self.max_streams = max_streams
        self.max_per_client = max_per_client
        self._by_client: Counter[str] = Counter()
        self._open = 0

    @property
    def open(self) -> int:
        return self._open

    def held_by(self, client_id: str) -> int:
        return self._by_client[client_id]

    def claim(self, client_id: str) -> None:
        """Take a slot for ``client_id`` or raise the 429 problem (nothing is taken then)."""
        if self._by_client[client_id] >= self.max_per_client:
            raise _refusal(
                f"This client already has {self.max_per_client} event streams open "
                "(ANIMEGAN_MAX_EVENT_STREAMS_PER_CLIENT); close one or poll GET /jobs/{id}."
            )
        if self._open >= self.max_streams:
            raise _refusal(
                f"This server has {self.max_streams} event streams open (ANIMEGAN_MAX_EVENT_STREAMS); "
                "retry shortly or poll GET /jobs/{id}."
            )
        self._by_client[client_id] += 1
        self._open += 1
        metrics.observe_event_streams(+1)

    def release(self, client_id: str) -> None:
        """Give back a slot taken by ``claim``."""
        self._by_client[client_id] -= 1
        if self._by_client[client_id] <= 0:
            del self._by_client[client_id]  # the counter must not grow with every client ever seen
        self._open -= 1
        metrics.observe_event_streams(-1)


def _refusal(detail: str) -> ApiError:
    return ApiError("too-many-streams", detail, headers={"Retry-After": str(RETRY_AFTER_S)})
