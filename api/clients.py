"""Who is asking: the client identity every per-client limit, dedup entry and job is scoped to.

Without a keys file a client is its address; with one (ANIMEGAN_API_KEYS_FILE) it is the key's
name. ``ClientIdentity.id`` goes into Redis key names (bounded, no separators an attacker could
abuse); ``ClientIdentity.label`` is safe as a metric label (a key's name, never an address).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

ANONYMOUS_LABEL = "anonymous"


@dataclass(frozen=True)
class ClientIdentity:
    id: str  # "key:NAME" or "addr:ADDRESS"
    label: str  # a key's name, or "anonymous" for address-identified clients


def client_of(request: Request) -> ClientIdentity:
    """The identity the auth layer attached to this request, else the peer's address."""
    found = getattr(request.state, "client", None)
    if isinstance(found, ClientIdentity):
        return found
    host = request.client.host if request.client else "unknown"
    return ClientIdentity(id=f"addr:{host}", label=ANONYMOUS_LABEL)
