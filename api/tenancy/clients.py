"""Who is asking: the client identity every per-client limit, dedup entry and job is scoped to.

Without a keys file a client is its address; with one (ANIMEGAN_API_KEYS_FILE) it is the key's
name. ``ClientIdentity.id`` goes into Redis key names (bounded, no separators an attacker could
abuse: a key name matches ``api.tenancy.keys.NAME_PATTERN``, an address is parsed and re-printed by
``ipaddress``); ``ClientIdentity.label`` is safe as a metric label (a key's name, never an address).

``api.tenancy.auth.ClientMiddleware`` sets the identity on every HTTP request (``scope["state"]["client"]``);
routes read it with ``client_of(request)``. The address is the TCP peer's, or, only when the peer
is one of ANIMEGAN_TRUSTED_PROXIES, the right-most ``X-Forwarded-For`` entry that is not itself a
trusted proxy (entries left of it were written by the client and prove nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from fastapi import Request
from starlette.types import Scope

ANONYMOUS_LABEL = "anonymous"
UNKNOWN_ADDRESS = "unknown"

Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class ClientIdentity:
    id: str  # "key:NAME" or "addr:ADDRESS"
    label: str  # a key's name, or "anonymous" for address-identified clients


def key_client(name: str) -> ClientIdentity:
    return ClientIdentity(id=f"key:{name}", label=name)


def address_client(address: str) -> ClientIdentity:
    return ClientIdentity(id=f"addr:{address}", label=ANONYMOUS_LABEL)


def client_of(request: Request) -> ClientIdentity:
    """The identity the auth layer attached to this request, else the peer's address."""
    found = getattr(request.state, "client", None)
    if isinstance(found, ClientIdentity):
        return found
    host = request.client.host if request.client else UNKNOWN_ADDRESS
    return address_client(host)


def identity_of(scope: Scope) -> ClientIdentity:
    """``client_of`` for ASGI middleware, which has a scope rather than a Request."""
    found = scope.get("state", {}).get("client")
    if isinstance(found, ClientIdentity):
        return found
    peer = scope.get("client")
    return address_client(peer[0] if peer else UNKNOWN_ADDRESS)


def route_path(scope: Scope) -> str:
    """The request path inside the app (without the root path a proxy mounts it under)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def _parse_address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """ANIMEGAN_TRUSTED_PROXIES: the peers whose ``X-Forwarded-For`` is believed."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.networks: list[IPv4Network | IPv6Network] = [ip_network(e.strip(), strict=False) for e in entries]

    def trusts(self, address: Address) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)

    def client_address(self, peer: str | None, forwarded_for: Iterable[str]) -> str:
        """The client's address: the peer's, or from ``X-Forwarded-For`` values when the peer is trusted."""
        peer_address = _parse_address(peer) if peer else None
        if peer_address is None:
            return peer or UNKNOWN_ADDRESS
        if not self.networks or not self.trusts(peer_address):
            return str(peer_address)
        hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
        nearest = peer_address  # the closest hop known to be honest so far
        for hop in reversed(hops):
            address = _parse_address(hop)
            if address is None:
                # A garbled entry: nothing to its left can be believed; the last trusted hop is the client.
                return str(nearest)
            if not self.trusts(address):
                return str(address)
            nearest = address
        return str(nearest)
