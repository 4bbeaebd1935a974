"""Webhook deliveries in a real Redis: scheduled with the job's end, claimed once, leased, settled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
from PIL import Image

from jobstore.keys import WEBHOOKS_DUE_KEY, job_key, webhook_key
from jobstore.records import ErrorCode, JobRecord
from jobstore.transitions import add_mark_failed, add_mark_succeeded
from jobstore.webhooks import Delivery, DeliveryState, DeliveryStore

CALLBACK = "https://hooks.example.com/in"


def finished(client: redis.Redis, record: JobRecord, *, failed: bool = False) -> None:
    pipe = client.pipeline(transaction=True)
    if failed:
        add_mark_failed(pipe, record, ErrorCode.INTERNAL_ERROR, "boom")
    else:
        add_mark_succeeded(pipe, record, inference_s=0.5, width=8, height=8, size=100)
    pipe.execute()


def due_ids(client: redis.Redis) -> list[str]:
    return [m.decode() for m in client.zrange(WEBHOOKS_DUE_KEY, 0, -1)]  # type: ignore[union-attr]


def test_a_job_ending_schedules_one_delivery_only_when_it_has_a_callback(
    redis_url: str, queue_job: Callable[..., JobRecord]
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        image = Image.new("RGB", (8, 8))
        with_callback = queue_job(client, image).model_copy(update={"callback_url": CALLBACK})
        finished(client, with_callback)
        finished(client, queue_job(client, image, fmt="jpeg"))  # no callback: nothing scheduled
        failing = queue_job(client, image, fmt="webp").model_copy(update={"callback_url": CALLBACK})
        finished(client, failing, failed=True)

        ids = due_ids(client)
        assert len(ids) == 2
        deliveries = [DeliveryStore(client, keep_s=60).read(i) for i in ids]
        by_job = {d["job_id"]: d for d in deliveries}
        assert by_job[with_callback.id]["event"] == "job.succeeded"
        assert by_job[failing.id]["event"] == "job.failed"
        assert all(d["url"] == CALLBACK and d["attempt"] == "0" and d["state"] == "pending" for d in deliveries)
        assert client.hget(job_key(with_callback.id), "state") == b"succeeded"
        assert 0 < client.ttl(webhook_key(ids[0])) <= 7 * 24 * 3600


def test_concurrent_senders_claim_a_due_delivery_once(redis_url: str, queue_job: Callable[..., JobRecord]) -> None:
    with redis.Redis.from_url(redis_url) as client:
        record = queue_job(client, Image.new("RGB", (8, 8))).model_copy(update={"callback_url": CALLBACK})
        finished(client, record)
        claims: list[Delivery | None] = []
        barrier = threading.Barrier(8)

        def claim() -> None:
            with redis.Redis.from_url(redis_url) as own:
                store = DeliveryStore(own, keep_s=60)
                barrier.wait()
                claims.append(store.claim_due(lease_s=30))

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        won = [c for c in claims if c is not None]
        assert len(claims) == 8
        assert len(won) == 1
        assert won[0].job_id == record.id
        assert client.zscore(WEBHOOKS_DUE_KEY, won[0].id) >= time.time() + 25  # leased, not due


def test_a_lease_that_runs_out_is_claimed_again_and_the_old_claim_cannot_settle(
    redis_url: str, queue_job: Callable[..., JobRecord]
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        record = queue_job(client, Image.new("RGB", (8, 8))).model_copy(update={"callback_url": CALLBACK})
        finished(client, record)
        store = DeliveryStore(client, keep_s=60)
        first = store.claim_due(lease_s=0.3)
        assert first is not None
        assert store.claim_due(lease_s=0.3) is None  # held
        time.sleep(0.4)  # the first sender died mid-send
        second = store.claim_due(lease_s=30)
        assert second is not None
        assert (second.id, second.attempt) == (first.id, 0)  # the same attempt, never counted as made

        assert not store.settle(first, DeliveryState.DELIVERED)
        assert store.read(first.id)["state"] == "pending"
        assert store.settle(second, DeliveryState.PENDING, next_due=time.time() + 60, last_error="HTTP 500")
        assert store.read(first.id)["attempt"] == "1"
        assert store.claim_due(lease_s=30) is None  # the retry is not due yet


def test_the_body_is_kept_from_the_first_attempt_and_an_ended_delivery_leaves_the_due_set(
    redis_url: str, queue_job: Callable[..., JobRecord]
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        record = queue_job(client, Image.new("RGB", (8, 8))).model_copy(update={"callback_url": CALLBACK})
        finished(client, record)
        store = DeliveryStore(client, keep_s=120)
        claimed = store.claim_due(lease_s=30)
        assert claimed is not None
        assert claimed.body is None
        kept = store.store_body(claimed, b'{"first":1}')
        assert store.store_body(kept, b'{"second":2}').body == b'{"first":1}'
        assert store.settle(kept, DeliveryState.PENDING, next_due=time.time() - 1)
        again = store.claim_due(lease_s=30)
        assert again is not None
        assert again.body == b'{"first":1}'
        assert store.settle(again, DeliveryState.GIVEN_UP, last_error="HTTP 500")
        assert due_ids(client) == []
        assert store.read(again.id)["state"] == "given_up"
        assert 0 < client.ttl(webhook_key(again.id)) <= 120


def test_a_delivery_whose_job_record_expired_is_given_up_without_sending(
    redis_url: str, queue_job: Callable[..., JobRecord]
) -> None:
    from worker.config import WorkerSettings
    from worker.webhook_delivery import WebhookPoster
    from worker.webhooks import WebhookSender

    settings = WorkerSettings(redis_url=redis_url, webhook_secret="0123456789abcdef0123", webhook_keep_s=60)  # type: ignore[arg-type]
    with redis.Redis.from_url(redis_url) as client:
        record = queue_job(client, Image.new("RGB", (8, 8))).model_copy(update={"callback_url": CALLBACK})
        finished(client, record)
        client.delete(job_key(record.id))
        poster = WebhookPoster(settings)
        try:
            sender = WebhookSender(settings, client, poster)
            assert sender.run_once()
            assert not sender.run_once()  # nothing else is due
        finally:
            poster.close()
        [delivery_id] = [k.decode().rsplit(":", 1)[1] for k in client.keys(webhook_key("*"))]
        stored = DeliveryStore(client, keep_s=60).read(delivery_id)
        assert (stored["state"], stored["attempt"]) == ("given_up", "1")
        assert "gone" in stored["last_error"]
        assert due_ids(client) == []
