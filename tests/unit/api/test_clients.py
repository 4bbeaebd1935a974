"""Who the client is: the X-Forwarded-For resolver, the keys file parser and KeyRing, the rate syntax."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from api.tenancy.auth import needs_key
from api.tenancy.clients import TrustedProxies
from api.tenancy.keys import KEY_PREFIX, KeyRing, KeysFileError, key_digest, new_key, parse_keys
from api.tenancy.rate_limit import counts
from api.tenancy.rate_rule import RateRule, parse_rate

PROXIES = TrustedProxies(["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # untrusted peer: its header is ignored
        ("10.1.2.3", [], "10.1.2.3"),  # a trusted peer without the header is the client
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # the left entry is the client's own claim
        ("10.1.2.3", ["198.51.100.1, 10.4.4.4, 192.0.2.1"], "198.51.100.1"),  # chained trusted proxies
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1, 10.4.4.4"], "198.51.100.1"),  # several header lines
        ("10.1.2.3", ["10.5.5.5, 10.4.4.4"], "10.5.5.5"),  # every hop trusted: the farthest one
        ("10.1.2.3", ["6.6.6.6, not-an-ip, 10.4.4.4"], "10.4.4.4"),  # garbage: stop at the last honest hop
        ("10.1.2.3", ["198.51.100.1:51234"], "198.51.100.1"),
        ("2001:db8::1", ["[2001:db8:1::5]:443, 2606:4700::1"], "2606:4700::1"),
        ("::ffff:10.1.2.3", ["198.51.100.1"], "198.51.100.1"),  # IPv4-mapped peer is the IPv4 address
        (None, ["198.51.100.1"], "unknown"),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    peer: str | None, forwarded: list[str], client: str
) -> None:
    assert PROXIES.client_address(peer, forwarded) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert TrustedProxies().client_address("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"


def test_new_keys_are_random_prefixed_and_hash_to_the_file_format() -> None:
    first, second = new_key(), new_key()
    assert first != second
    assert first.startswith(KEY_PREFIX)
    assert len(first) > 40
    entries = parse_keys(f"alice {key_digest(first)}  # laptop\n\n# comment\nbob {key_digest(second).upper()}\n", "f")
    assert [e.name for e in entries] == ["alice", "bob"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("alice\n", "f line 1: expected `NAME SHA256HEX`, got 1 field"),
        (f"# c\nalice {'0' * 64}\nbob agk_the-key-itself\n", "f line 3: the digest is not 64 hex digits"),
        (f"al/ice {'0' * 64}\n", "f line 1: the name 'al/ice'"),
        (f"alice {'0' * 64}\nalice {'1' * 64}\n", "f line 2: the name 'alice' appears twice"),
        (f"alice {'0' * 64}\nbob {'0' * 64}\n", "f line 2: the same key digest appears twice"),
    ],
)
def test_a_malformed_line_is_named(text: str, words: str) -> None:
    with pytest.raises(KeysFileError, match="^" + words.replace("(", r"\(").replace("`", "`")):
        parse_keys(text, "f")


def test_key_ring_reloads_a_changed_file_at_most_once_a_second(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "keys"
    path.write_text(f"alice {key_digest('k1')}\n")
    ring = KeyRing(path, clock=lambda: now[0])
    assert ring.match("k1") == "alice"
    assert ring.match("k2") is None
    path.write_text(f"bob {key_digest('k2')}\n")
    now[0] = 0.5
    assert ring.match("k2") is None  # not looked at yet
    now[0] = 1.5
    assert ring.match("k2") == "bob"
    assert ring.match("k1") is None
    path.write_text("broken\n")
    now[0] = 3.0
    assert ring.match("k2") == "bob"  # a broken file keeps the last good keys
    path.unlink()
    now[0] = 4.5
    assert ring.match("k2") == "bob"


def test_a_missing_keys_file_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="cannot read"):
        KeyRing(tmp_path / "absent")


@pytest.mark.parametrize(
    ("text", "rule"),
    [("120/minute", RateRule(120, 60)), ("5/second", RateRule(5, 1)), (" 10 / Hours ", RateRule(10, 3600))],
)
def test_rates_parse(text: str, rule: RateRule) -> None:
    assert parse_rate(text) == rule
    assert RateRule(120, 60).interval_us == 500_000


@pytest.mark.parametrize("text", ["", "off", "OFF"])
def test_rate_limit_can_be_off(text: str) -> None:
    assert parse_rate(text) is None


@pytest.mark.parametrize("text", ["120", "0/minute", "5/fortnight", "-1/second", "1.5/second"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not N/second"):
        parse_rate(text)


def test_what_needs_a_key_and_what_counts_against_the_rate() -> None:
    open_paths = ("/healthz", "/readyz", "/", "/static/app.js", "/problems", "/problems/unauthorized")
    assert [needs_key(p) for p in open_paths] == [False] * 6
    assert [needs_key(p) for p in ("/stylize", "/jobs/x/events", "/docs", "/openapi.json", "/metrics")] == [True] * 5
    assert [counts(p) for p in ("/healthz", "/readyz", "/metrics", "/", "/static/app.js", "/docs/assets/x")] == [
        False
    ] * 6
    assert [counts(p) for p in ("/stylize", "/jobs/x", "/jobs/x/events", "/styles", "/docs")] == [True] * 5


def test_key_ring_sees_a_rewrite_that_keeps_size_mtime_and_inode(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "keys"
    path.write_text(f"alice {key_digest('k1')}\n")
    before = path.stat()
    ring = KeyRing(path, clock=lambda: now[0])
    assert ring.match("k1") == "alice"
    time.sleep(0.01)
    with path.open("r+") as same_inode:  # same length, same inode, then the old mtime put back
        same_inode.write(f"carol {key_digest('k2')}\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    now[0] = 1.5
    assert ring.match("k2") == "carol"
    assert ring.match("k1") is None
