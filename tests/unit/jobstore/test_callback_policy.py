"""The callback URL rules: the URL's shape and the addresses its host may resolve to."""

from __future__ import annotations

import ipaddress

import pytest

from jobstore.callback_policy import (
    MAX_URL_LENGTH,
    CallbackRefused,
    check_addresses,
    parse_callback_url,
    refusal_reason,
)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("fefe:1:2::3", "site-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private"),
        ("2002:a00:1::", "private"),
        ("192.0.2.1", "private"),  # documentation range (TEST-NET-1)
    ],
)
def test_non_public_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_a_host_is_refused_if_any_of_its_addresses_is_private() -> None:
    public, private = ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.5")
    check_addresses("hooks.example.com", [public])
    with pytest.raises(CallbackRefused, match=r"10\.0\.0\.5, private"):
        check_addresses("hooks.example.com", [public, private])
    with pytest.raises(CallbackRefused, match="no address"):
        check_addresses("hooks.example.com", [])


def test_url_parts_for_delivery() -> None:
    target = parse_callback_url("HTTPS://Hooks.Example.COM:8443/in?x=1&y=2")
    assert (target.scheme, target.host, target.port, target.target) == (
        "https",
        "hooks.example.com",
        8443,
        "/in?x=1&y=2",
    )
    assert target.host_header == "hooks.example.com:8443"
    assert target.literal_address is None
    plain = parse_callback_url("http://[2606:4700::1]")
    assert (plain.port, plain.target, plain.host_header) == (80, "/", "[2606:4700::1]")
    assert plain.literal_address == ipaddress.ip_address("2606:4700::1")
    assert parse_callback_url("https://bücher.example/").host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("http:///path", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com:99999/", "cannot be parsed"),
        ("https://example.com:0/", "port 0"),
        ("http://93.184.215.14:00/hook", "port 0"),
        ("https://example.com/a b", "whitespace"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, "limit is 2048"),
    ],
)
def test_malformed_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(CallbackRefused, match=message):
        parse_callback_url(url)
