"""Which callback URLs the service posts to: the URL's shape and the addresses its host may have.

The gateway applies these rules when a job is submitted (``api.callbacks``) and the workers again
before every delivery attempt (``worker.webhook_delivery``), each with its own resolver: a name
that resolved to a public address at submit time and to a private one later is not followed.
An address is refused when it is not globally routable or names a cloud metadata service:

- loopback, private (RFC 1918, IPv6 unique local), link-local, IPv6 site-local (fec0::/10,
  deprecated but still routed inside some networks, and ``ipaddress`` calls it global),
  unspecified, multicast, reserved, carrier-grade NAT (100.64.0.0/10) and every other non-global
  range of ``ipaddress``;
- cloud metadata endpoints (169.254.169.254, fd00:ec2::254, 100.100.100.200, 192.0.0.192);
- IPv6 forms that embed an IPv4 address (mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
  6to4 ``2002::/16``) are judged by the IPv4 address they carry.

A host resolving to several addresses is refused if any one of them is. A URL naming port 0 is
refused (it would otherwise mean the scheme's default port). Stdlib only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048
SCHEMES = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class CallbackRefused(ValueError):
    """The callback URL, or an address its host resolves to, is not one the service posts to."""


@dataclass(frozen=True)
class CallbackTarget:
    """A callback URL split into what delivery needs: where to connect, and what to ask for."""

    url: str
    scheme: str
    host: str  # lower case, IDNA-encoded, IPv6 without brackets
    port: int
    target: str  # path and query, as sent on the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == SCHEMES[self.scheme] else f"{host}:{self.port}"

    @property
    def literal_address(self) -> IPAddress | None:
        """The host as an address, when the URL names one instead of a name."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def parse_callback_url(url: str) -> CallbackTarget:
    """Check the URL's shape (http(s), at most MAX_URL_LENGTH, a host, no credentials); raise CallbackRefused."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"The URL is {len(url)} characters long; the limit is {MAX_URL_LENGTH}.")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise CallbackRefused("The URL contains whitespace or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"The URL cannot be parsed ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise CallbackRefused("The URL must start with http:// or https://.")
    if not parts.hostname:
        raise CallbackRefused("The URL has no host.")
    if port == 0:
        raise CallbackRefused("The URL names port 0, which no receiver listens on.")
    if parts.username is not None or parts.password is not None:
        # The signature authenticates the service; credentials in a URL end up in logs and proxies.
        raise CallbackRefused("The URL must not carry credentials (user:password@).")
    return CallbackTarget(
        url=url,
        scheme=scheme,
        host=_idna(parts.hostname),
        port=port or SCHEMES[scheme],
        target=_request_target(parts),
    )


def refusal_reason(address: IPAddress) -> str | None:
    """Why the service does not post to ``address`` (e.g. 'loopback'), or None when it is public."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal_reason(embedded)
    for name, flag in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if flag:
            return name
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "carrier-grade NAT"
    if not address.is_global:
        return "not globally routable"
    return None


def check_addresses(host: str, addresses: list[IPAddress]) -> None:
    """Raise CallbackRefused unless ``host`` resolved to at least one address and all of them are public."""
    if not addresses:
        raise CallbackRefused(f"The host {host!r} has no address.")
    for address in addresses:
        reason = refusal_reason(address)
        if reason is not None:
            raise CallbackRefused(f"The host {host!r} resolves to {address}, {reason}; callbacks go to public hosts.")


def parse_addresses(infos: list[tuple[object, ...]]) -> list[IPAddress]:
    """The distinct addresses of a ``getaddrinfo`` answer, in its order (scope ids dropped)."""
    found: dict[IPAddress, None] = {}
    for info in infos:
        sockaddr = info[4]
        assert isinstance(sockaddr, tuple)
        found[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(found)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _idna(hostname: str) -> str:
    if hostname.isascii():
        return hostname.lower()
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise CallbackRefused("The URL's host is not a valid domain name.") from None


def _request_target(parts: SplitResult) -> str:
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path
