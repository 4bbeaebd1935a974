"""The per-client request rate (ANIMEGAN_RATE_LIMIT): a GCRA limiter in Redis, shared by every replica.

GCRA (the generic cell rate algorithm) keeps one number per client, its theoretical arrival time,
updated by one Lua script with Redis's own clock, so all gateway replicas count together and
atomically. ``N/period`` allows a burst of N requests, then one every period/N; a refusal knows
exactly when the next request would pass, which is the honest ``Retry-After``. Each key expires
once the client is back to a full burst, so idle clients cost no memory.

Which requests count (``RateLimitMiddleware``): every request except the probes (/healthz,
/readyz), /metrics, and the static files of the page and the docs (``/``, ``/static/*``,
``/docs/assets/*``), which carry no data and cost nothing. An event stream counts once, when it
opens.

If Redis cannot be asked, the request passes (fail open): the limiter protects the service, and
while Redis is down every request that matters fails with 503 anyway. It is logged (at most every
30 s) and counted in ``animegan_rate_limit_errors_total``; for ``OUTAGE_SKIP_S`` after a failure
Redis is not asked, so an outage adds no connect timeout to every request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from api import metrics
from api.problems import ApiError, problem_response
from api.tenancy.auth import closing
from api.tenancy.clients import ClientIdentity, identity_of, route_path
from api.tenancy.rate_rule import RateRule
from jobstore.keys import PREFIX
from telemetry.logs import request_id_var

logger = logging.getLogger(__name__)

RATE_KEY_PREFIX = f"{PREFIX}rate:"
OUTAGE_SKIP_S = 2.0
OUTAGE_LOG_EVERY_S = 30.0
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/"})
EXEMPT_PREFIXES = ("/static/", "/docs/assets/")

# KEYS[1]: the client's key. ARGV: interval (microseconds per request), burst (requests).
# Returns {1, remaining} when allowed, {0, microseconds until the next request would pass}.
GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0
    remaining: int = 0


class RateLimiter:
    """Asks Redis whether one more request of a client fits its rate."""

    def __init__(self, client: redis.asyncio.Redis, rule: RateRule) -> None:
        self.client = client
        self.rule = rule
        self._script = client.register_script(GCRA_SCRIPT)
        self._skip_until = 0.0
        self._logged_at = -math.inf

    async def decide(self, client_id: str) -> Decision:
        """Allowed, or refused with the whole seconds to wait; a Redis failure allows (fail open)."""
        if time.monotonic() < self._skip_until:
            return Decision(allowed=True)
        try:
            allowed, figure = await self._script(
                keys=[RATE_KEY_PREFIX + client_id], args=[self.rule.interval_us, self.rule.limit]
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._on_outage(exc)
            return Decision(allowed=True)
        if allowed:
            return Decision(allowed=True, remaining=int(figure))
        return Decision(allowed=False, retry_after_s=max(1, math.ceil(int(figure) / 1_000_000)))

    def _on_outage(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._skip_until = now + OUTAGE_SKIP_S
        metrics.observe_rate_limit_error()
        if now - self._logged_at >= OUTAGE_LOG_EVERY_S:
            self._logged_at = now
            logger.warning("rate limit not enforced: Redis unreachable (%s); requests pass", type(exc).__name__)

    async def aclose(self) -> None:
        await self.client.aclose()


def counts(path: str) -> bool:
    """Whether a request to ``path`` counts against its client's rate."""
    return path not in EXEMPT_PATHS and not path.startswith(EXEMPT_PREFIXES)


class RateLimitMiddleware:
    """Pure ASGI: 429 ``rate-limited`` with Retry-After once a client is over its rate. Runs after
    ``ClientMiddleware``, so it counts per key (or per address without keys)."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not counts(route_path(scope)):
            await self.app(scope, receive, send)
            return
        client: ClientIdentity = identity_of(scope)
        decision = await self.limiter.decide(client.id)
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        metrics.observe_rejection("rate-limited", client=client.label)
        logger.warning("rate limited", extra={"client": client.label, "retry_after_s": decision.retry_after_s})
        rule = self.limiter.rule
        error = ApiError(
            "rate-limited",
            f"More than {rule} requests from this client; retry in {decision.retry_after_s} s.",
            headers={"Retry-After": str(decision.retry_after_s)},
        )
        response = problem_response(
            error, instance=scope["path"], request_id=request_id_var.get(), extra_headers=closing(scope)
        )
        await response(scope, receive, send)
