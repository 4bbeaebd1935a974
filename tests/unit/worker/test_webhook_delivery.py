"""One delivery attempt: the address checked is the address connected to, signed, no redirects.

httpx's MockTransport stands in for the network here (the requests it sees are what would go on
the wire); tests/integration/test_webhooks.py sends to a real receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

import httpx
import pytest
from pydantic import ValidationError

from jobstore.callback_policy import IPAddress
from jobstore.webhooks import Delivery, WebhookEvent
from worker.config import WorkerSettings
from worker.webhook_delivery import Outcome, WebhookPoster, sign

SECRET = "0123456789abcdef0123"
BODY = b'{"id":"job","status":"succeeded"}'


def delivery(url: str) -> Delivery:
    return Delivery(
        id="d" * 22, event=WebhookEvent.JOB_SUCCEEDED, url=url, job_id="j" * 22, attempt=0, created_at=0.0, token="t"
    )


def poster(
    answers: list[int], seen: list[httpx.Request], table: dict[str, list[str]], **changes: object
) -> WebhookPoster:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = answers.pop(0) if answers else 200
        return httpx.Response(status, headers={"Location": "http://10.0.0.1/"} if status == 302 else {})

    def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return [ipaddress.ip_address(a) for a in table[host]]

    settings = WorkerSettings.model_validate({"webhook_secret": SECRET, **changes})
    return WebhookPoster(settings, resolver=resolve, transport=httpx.MockTransport(handle))


def test_https_goes_to_the_checked_address_with_host_header_and_sni_of_the_name() -> None:
    seen: list[httpx.Request] = []
    result = poster([], seen, {"hooks.example.com": ["93.184.215.14"]}).post(
        delivery("https://hooks.example.com/in?a=1"), BODY
    )
    assert result.outcome is Outcome.DELIVERED
    [request] = seen
    assert request.url == "https://93.184.215.14/in?a=1"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.content == BODY
    assert request.headers["animegan-event"] == "job.succeeded"
    assert request.headers["animegan-delivery"] == "d" * 22
    t, v1 = (part.split("=", 1)[1] for part in request.headers["animegan-signature"].split(","))
    assert v1 == hmac.new(SECRET.encode(), f"{t}.".encode() + BODY, hashlib.sha256).hexdigest()


def test_a_name_that_now_resolves_to_a_private_address_is_not_contacted() -> None:
    seen: list[httpx.Request] = []
    result = poster([], seen, {"hooks.example.com": ["93.184.215.14", "192.168.0.10"]}).post(
        delivery("https://hooks.example.com/in"), BODY
    )
    assert result.outcome is Outcome.REFUSED
    assert "192.168.0.10" in result.error
    assert seen == []


def test_a_redirect_is_a_failed_attempt_and_its_location_is_not_requested() -> None:
    seen: list[httpx.Request] = []
    result = poster([302], seen, {"hooks.example.com": ["93.184.215.14"]}).post(
        delivery("http://hooks.example.com:8080/in"), BODY
    )
    assert (result.outcome, result.status, result.error) == (Outcome.FAILED, 302, "HTTP 302")
    assert [str(r.url) for r in seen] == ["http://93.184.215.14:8080/in"]
    assert seen[0].headers["host"] == "hooks.example.com:8080"
    assert "sni_hostname" not in seen[0].extensions


def test_unresolvable_host_and_server_errors_are_retryable_failures() -> None:
    seen: list[httpx.Request] = []
    assert poster([], seen, {}).post(delivery("https://gone.example/"), BODY).outcome is Outcome.FAILED
    assert poster([503], seen, {"a.example": ["8.8.8.8"]}).post(delivery("https://a.example/"), BODY).status == 503


def test_the_opt_in_lets_a_private_address_through() -> None:
    seen: list[httpx.Request] = []
    result = poster([], seen, {"localhost": ["127.0.0.1"]}, webhook_allow_private=True).post(
        delivery("http://localhost:9000/hook"), BODY
    )
    assert result.outcome is Outcome.DELIVERED
    assert str(seen[0].url) == "http://127.0.0.1:9000/hook"


def test_signature_format() -> None:
    expected = hmac.new(b"k", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(b"k", 1_700_000_000, BODY) == f"t=1700000000,v1={expected}"


def test_retry_schedule_setting_is_parsed_and_bad_values_are_refused() -> None:
    assert WorkerSettings(webhook_retry_schedule_s="0, 0.5,2").webhook_retry_schedule_s == [0.0, 0.5, 2.0]  # type: ignore[arg-type]
    assert WorkerSettings().webhook_retry_schedule_s == [0, 30, 120, 480, 1200, 1800]
    for bad in ("", "1,x", "-1", ",".join(["1"] * 21)):
        with pytest.raises(ValidationError):
            WorkerSettings(webhook_retry_schedule_s=bad)  # type: ignore[arg-type]
