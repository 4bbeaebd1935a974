"""ClientMiddleware: names the client of every request, and with a keys file demands its key.

Pure ASGI (it must cover the event stream and the docs as well as the routes) and outside the
upload limiter, so a request without a valid key is refused before its body takes an upload slot.

- Every HTTP request gets ``scope["state"]["client"]``, an ``api.tenancy.clients.ClientIdentity``:
  ``key:NAME`` when a valid key was sent, else ``addr:ADDRESS`` (the peer, or X-Forwarded-For from a
  trusted proxy).
- With ANIMEGAN_API_KEYS_FILE set, a request without ``Authorization: Bearer <key>`` gets 401
  ``unauthorized`` with ``WWW-Authenticate: Bearer realm="animegan"``; a key not in the file adds
  ``error="invalid_token"`` (RFC 6750). Open without a key: the probes (``/healthz``, ``/readyz``),
  the web page and its two static files (``/``, ``/static/*``), since a browser's navigation
  cannot send the header: the page itself asks for the key when the API answers 401; and the
  problem pages (``/problems``, ``/problems/*``), which every problem's ``type`` points at, a
  refused client included (they say nothing about any job or key).
- A request admitted with a key also gets ``scope["state"]["key_check"]``: ``key_revoked(request)``
  asks the keys file again (re-read within ``RELOAD_CHECK_S`` of a change), so a long-lived
  response (an event stream) ends once its key is revoked instead of running its full life.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api import metrics
from api.problems import ApiError, problem_response
from api.tenancy.clients import ClientIdentity, TrustedProxies, address_client, key_client, route_path
from api.tenancy.keys import RELOAD_CHECK_S, KeyRing
from telemetry.logs import request_id_var

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/", "/problems"})
OPEN_PREFIXES = ("/static/", "/problems/")
REALM = 'Bearer realm="animegan"'
# How often a long-lived response asks whether its key still holds: the keys file's reload interval.
KEY_RECHECK_S = RELOAD_CHECK_S


@dataclass(frozen=True)
class KeyCheck:
    """Whether the key a request was admitted with still names the same client."""

    keys: KeyRing
    token: str
    name: str

    def holds(self) -> bool:
        return self.keys.match(self.token) == self.name


def key_revoked(request: Request) -> bool:
    """True when the request came with a key that the keys file no longer holds (False without keys)."""
    check = request.scope.get("state", {}).get("key_check")
    return isinstance(check, KeyCheck) and not check.holds()


def needs_key(path: str) -> bool:
    """Whether a request to ``path`` must carry a key when a keys file is set."""
    return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header: str = value.decode("latin-1")
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def closing(scope: Scope) -> dict[str, str]:
    """``Connection: close`` for a refused request with a body: the server need not read an upload."""
    return {"Connection": "close"} if scope["method"] in {"POST", "PUT", "PATCH"} else {}


class ClientMiddleware:
    def __init__(self, app: ASGIApp, *, keys: KeyRing | None, proxies: TrustedProxies) -> None:
        self.app = app
        self.keys = keys
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope) if self.keys is not None else None
        name = self.keys.match(token) if self.keys is not None and token is not None else None
        client = key_client(name) if name is not None else self._by_address(scope)
        state = scope.setdefault("state", {})
        state["client"] = client
        if self.keys is not None and token is not None and name is not None:
            state["key_check"] = KeyCheck(self.keys, token, name)
        if self.keys is None or name is not None or not needs_key(route_path(scope)):
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, receive, send, client, wrong_key=token is not None)

    def _by_address(self, scope: Scope) -> ClientIdentity:
        peer = scope.get("client")
        forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        return address_client(self.proxies.client_address(peer[0] if peer else None, forwarded))

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, client: ClientIdentity, *, wrong_key: bool
    ) -> None:
        metrics.observe_rejection("unauthorized", client=client.label)
        if wrong_key:
            detail = "The API key is not valid (unknown or revoked)."
            challenge = f'{REALM}, error="invalid_token", error_description="{detail}"'
        else:
            detail = "This service needs an API key: send it as `Authorization: Bearer <key>`."
            challenge = REALM
        logger.info("unauthorized request", extra={"path": scope["path"], "wrong_key": wrong_key})
        error = ApiError("unauthorized", detail, headers={"WWW-Authenticate": challenge})
        response = problem_response(
            error, instance=scope["path"], request_id=request_id_var.get(), extra_headers=closing(scope)
        )
        await response(scope, receive, send)
