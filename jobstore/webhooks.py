"""Webhook deliveries in Redis: scheduled with a job's end, claimed and settled by the sender.

A delivery is the hash ``webhook:{id}`` plus its member in the sorted set ``webhooks:due``
(score: the unix time it is due). Its life:

1. ``add_schedule_webhook`` queues the hash and the due entry on the pipeline that ends the job
   (``jobstore.transitions``), so the terminal state and its announcement commit together and a
   restart of any process loses neither. ``batch.completed`` is scheduled the same way, by the
   batch progress script that runs on that pipeline (``jobstore.batches``).
2. A sender calls ``claim_due``: one Lua script takes the earliest due delivery, moves its due
   time to the end of a lease and stamps a fresh claim token. Two senders never hold the same
   attempt; a sender that dies mid-send leaves the delivery due again once the lease ends.
3. ``settle`` (Lua, checked against the claim token, so a sender whose lease ran out cannot
   overwrite a newer claim) records the attempt: ``delivered``, a retry at a later due time, or
   ``given_up``/``refused``. Ended deliveries leave the due set and are kept ``keep_s`` seconds
   with their last status and error for inspection.

The delivery id is fresh per event and never changes across retries (receivers deduplicate on
it). The body is rendered once, at the first attempt (``store_body``), and sent as the same bytes
on every retry. Imports redis and the job store only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

import redis
import redis.asyncio

from jobstore.keys import WEBHOOKS_DUE_KEY, webhook_key
from jobstore.records import JobRecord, RawHash, as_text, now

# The same pipelines as jobstore.transitions (which imports this module, so it cannot be imported here).
Pipe = redis.client.Pipeline | redis.asyncio.client.Pipeline

# A delivery nobody sends (no worker runs) is forgotten after this, like everything else with a TTL.
PENDING_TTL_S = 7 * 24 * 3600


class WebhookEvent(StrEnum):
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    # When a batch's last job ends (scheduled by jobstore.batches.PROGRESS; body: the batch).
    BATCH_COMPLETED = "batch.completed"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    GIVEN_UP = "given_up"
    REFUSED = "refused"  # the host resolved to an address the policy forbids: never retried


@dataclass(frozen=True)
class Delivery:
    """One delivery as claimed by a sender: ``attempt`` attempts were made before this one."""

    id: str
    event: WebhookEvent
    url: str
    job_id: str
    attempt: int
    created_at: float
    token: str
    body: bytes | None = None
    batch_id: str | None = None  # batch.completed: the batch announced (job_id is empty then)


def new_delivery_id() -> str:
    return secrets.token_urlsafe(16)


def add_schedule_webhook(pipe: Pipe, record: JobRecord, event: WebhookEvent) -> str | None:
    """Queue a delivery of ``event`` due now, if the job has a callback URL; returns its id."""
    if not record.callback_url:
        return None
    delivery_id = new_delivery_id()
    created = now()
    fields = {
        "id": delivery_id,
        "event": event.value,
        "url": record.callback_url,
        "job_id": record.id,
        "attempt": "0",
        "state": DeliveryState.PENDING.value,
        "created_at": str(created),
        "due_at": str(created),
    }
    pipe.hset(webhook_key(delivery_id), mapping=fields)  # type: ignore[arg-type]
    pipe.expire(webhook_key(delivery_id), PENDING_TTL_S)
    pipe.zadd(WEBHOOKS_DUE_KEY, {delivery_id: created})
    return delivery_id


# KEYS[1] due set; ARGV: now, lease end, token, key prefix. Takes the earliest due delivery whose
# hash still exists (members whose hash expired are dropped on the way).
_CLAIM = """
for _ = 1, 16 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #due == 0 then return false end
  local key = ARGV[4] .. due[1]
  if redis.call('EXISTS', key) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[2], due[1])
    redis.call('HSET', key, 'claim', ARGV[3])
    return {due[1], redis.call('HGETALL', key)}
  end
  redis.call('ZREM', KEYS[1], due[1])
end
return false
"""

# KEYS[1] due set, KEYS[2] delivery hash; ARGV: id, token, next due ('' when ended), TTL when
# ended, then field/value pairs. Ignored (returns 0) unless the caller still holds the claim.
_SETTLE = """
if redis.call('HGET', KEYS[2], 'claim') ~= ARGV[2] then return 0 end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], 'claim')
  redis.call('EXPIRE', KEYS[2], ARGV[4])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
"""


class DeliveryStore:
    """The sender's side of the deliveries, on a blocking Redis client."""

    def __init__(self, client: redis.Redis, *, keep_s: int) -> None:
        self.redis = client
        self.keep_s = keep_s
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)

    def claim_due(self, lease_s: float) -> Delivery | None:
        """Take the earliest delivery due now for ``lease_s`` seconds, or None when none is due."""
        at = now()
        token = secrets.token_hex(8)
        found = self._claim(keys=[WEBHOOKS_DUE_KEY], args=[at, at + lease_s, token, webhook_key("")])
        if not found:
            return None
        flat = found[1]
        fields = {as_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        return _delivery(fields, token)

    def store_body(self, delivery: Delivery, body: bytes) -> Delivery:
        """Keep the body rendered for the first attempt; every later attempt sends these bytes."""
        self.redis.hsetnx(webhook_key(delivery.id), "body", body)
        stored = self.redis.hget(webhook_key(delivery.id), "body")
        kept = stored if isinstance(stored, bytes) else body
        return Delivery(**{**delivery.__dict__, "body": kept})

    def settle(self, delivery: Delivery, state: DeliveryState, *, next_due: float | None = None, **fields: str) -> bool:
        """Record the attempt just made; False when the claim was lost (another sender owns it now)."""
        record = {"attempt": str(delivery.attempt + 1), "state": state.value, "last_attempt_at": str(now()), **fields}
        if next_due is not None:
            record["due_at"] = str(next_due)
        args: list[str | float | int] = [delivery.id, delivery.token, "" if next_due is None else next_due, self.keep_s]
        for name, value in record.items():
            args += [name, value]
        return bool(self._settle(keys=[WEBHOOKS_DUE_KEY, webhook_key(delivery.id)], args=args))

    def read(self, delivery_id: str) -> dict[str, str]:
        """A delivery's fields as text (the body left out), for inspection and tests."""
        raw: RawHash = self.redis.hgetall(webhook_key(delivery_id))
        return {as_text(k): as_text(v) for k, v in raw.items() if as_text(k) != "body"}


def _delivery(fields: dict[str, bytes | str], token: str) -> Delivery:
    body = fields.get("body")
    return Delivery(
        id=as_text(fields["id"]),
        event=WebhookEvent(as_text(fields["event"])),
        url=as_text(fields["url"]),
        job_id=as_text(fields["job_id"]),
        attempt=int(as_text(fields["attempt"])),
        created_at=float(as_text(fields["created_at"])),
        token=token,
        body=body.encode() if isinstance(body, str) else body,
        batch_id=as_text(fields["batch_id"]) if fields.get("batch_id") else None,
    )
