"""callback_url at submit time: a resolver the test controls stands in for DNS."""

from __future__ import annotations

import ipaddress

import anyio
import pytest

from api.jobs.callbacks import Resolver, check_callback_url
from api.problems import ApiError
from jobstore.callback_policy import IPAddress
from jobstore.webhook_settings import WebhookSettings

pytestmark = pytest.mark.anyio

SECRET = "0123456789abcdef0123"


class FakeResolver:
    """DNS as the test decides: each name's addresses; any other name does not resolve."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append((host, port))
        if host not in self.table:
            raise OSError(-2, "Name or service not known")
        return [ipaddress.ip_address(a) for a in self.table[host]]


def settings(**changes: object) -> WebhookSettings:
    return WebhookSettings.model_validate({"webhook_secret": SECRET, **changes})


async def refusal(url: str, resolver: Resolver, **changes: object) -> str:
    with pytest.raises(ApiError) as caught:
        await check_callback_url(url, settings(**changes), resolver=resolver)
    assert caught.value.slug == "callback-url-refused"
    assert caught.value.status == 422
    assert caught.value.extra["errors"][0]["loc"] == ["body", "callback_url"]
    return caught.value.detail


async def test_a_public_name_is_accepted_and_resolved_with_its_port() -> None:
    resolve = FakeResolver({"hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    url = "https://hooks.example.com:8443/in"
    assert await check_callback_url(url, settings(), resolver=resolve) == url
    assert resolve.asked == [("hooks.example.com", 8443)]


async def test_a_public_looking_name_that_resolves_to_a_private_address_is_refused() -> None:
    resolve = FakeResolver(
        {"hooks.example.com": ["93.184.215.14", "10.0.0.7"], "meta.example.net": ["169.254.169.254"]}
    )
    assert "10.0.0.7, private" in await refusal("https://hooks.example.com/x", resolve)
    assert "metadata" in await refusal("http://meta.example.net/", resolve)


async def test_literal_addresses_are_judged_without_resolving() -> None:
    resolve = FakeResolver({})
    assert "loopback" in await refusal("http://127.0.0.1:9000/", resolve)
    assert "carrier-grade NAT" in await refusal("http://100.64.1.1/", resolve)
    assert await check_callback_url("http://8.8.8.8/", settings(), resolver=resolve) == "http://8.8.8.8/"
    assert resolve.asked == []


async def test_an_unresolvable_or_slow_host_is_refused() -> None:
    assert "does not resolve" in await refusal("https://nowhere.invalid/", FakeResolver({}))

    async def hang(host: str, port: int) -> list[IPAddress]:
        await anyio.sleep(10)
        return []

    assert "within 0.05 s" in await refusal("https://slow.example/", hang, webhook_resolve_timeout_s=0.05)


async def test_the_opt_in_allows_private_hosts_but_not_other_schemes() -> None:
    resolve = FakeResolver({})
    url = "http://localhost:8080/hook"
    assert await check_callback_url(url, settings(webhook_allow_private=True), resolver=resolve) == url
    assert "http://" in await refusal("file:///etc/passwd", resolve, webhook_allow_private=True)


async def test_without_a_secret_every_callback_is_refused_and_no_callback_passes() -> None:
    off = WebhookSettings(webhook_allow_private=True)
    with pytest.raises(ApiError, match="ANIMEGAN_WEBHOOK_SECRET"):
        await check_callback_url("https://hooks.example.com/", off, resolver=FakeResolver({}))
    assert await check_callback_url(None, off) is None


def test_a_short_secret_is_refused_with_one_line() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        WebhookSettings(webhook_secret="short")  # type: ignore[arg-type]
