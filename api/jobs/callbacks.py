"""The ``callback_url`` of a submission, checked before the job exists (SSRF rules at submit time).

The URL's shape and the address rules are ``jobstore.callback_policy``'s; this module resolves the
host without blocking the event loop (``anyio.getaddrinfo`` under a timeout) and turns a refusal
into the 422 problem ``callback-url-refused`` naming the field. A host that does not resolve is
refused too: a callback that cannot be delivered should fail the request, not the job's end.
With ``ANIMEGAN_WEBHOOK_ALLOW_PRIVATE=true`` only the shape is checked. Without
``ANIMEGAN_WEBHOOK_SECRET`` every callback is refused (nothing would sign the deliveries).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import anyio

from api.problems import ApiError
from jobstore.callback_policy import CallbackRefused, IPAddress, check_addresses, parse_addresses, parse_callback_url
from jobstore.webhook_settings import WebhookSettings

FIELD = "callback_url"

# host, port -> the addresses it resolves to; raises OSError when it does not resolve.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The host's addresses, from the system resolver, off the event loop."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return parse_addresses(list(infos))


async def check_callback_url(
    url: str | None, settings: WebhookSettings, *, resolver: Resolver = resolve_host
) -> str | None:
    """The callback URL to store with the job (None when none was given); raises ApiError when refused."""
    if url is None:
        return None
    if not settings.webhooks_enabled:
        raise refused("Webhooks are not enabled on this server (ANIMEGAN_WEBHOOK_SECRET is unset).")
    try:
        target = parse_callback_url(url)
        if settings.webhook_allow_private:
            return url
        literal = target.literal_address
        addresses = [literal] if literal is not None else await _resolve(target.host, target.port, settings, resolver)
        check_addresses(target.host, addresses)
    except CallbackRefused as exc:
        raise refused(str(exc)) from None
    return url


async def _resolve(host: str, port: int, settings: WebhookSettings, resolver: Resolver) -> list[IPAddress]:
    timeout = settings.webhook_resolve_timeout_s
    try:
        with anyio.fail_after(timeout):
            return await resolver(host, port)
    except TimeoutError:
        raise CallbackRefused(f"The host {host!r} did not resolve within {timeout:g} s.") from None
    except (OSError, UnicodeError):
        raise CallbackRefused(f"The host {host!r} does not resolve.") from None


def refused(detail: str) -> ApiError:
    """422 ``callback-url-refused``, with ``errors`` naming the form field like a validation error."""
    return ApiError("callback-url-refused", detail, extra={"errors": [{"loc": ["body", FIELD], "msg": detail}]})
