"""Who the simulated users are to the service: the quota raised for one-address scenarios, the tenants' keys."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from api.tenancy.keys import key_digest, parse_keys
from loadtest import clients


def test_one_address_scenarios_get_a_quota_that_refuses_none_of_their_users() -> None:
    assert clients.raised_quota(156, {}) == {"ANIMEGAN_MAX_QUEUED_PER_CLIENT": "156"}
    assert clients.raised_quota(4, {}) == {"ANIMEGAN_MAX_QUEUED_PER_CLIENT": "10"}  # never below the default
    assert clients.raised_quota(156, {"ANIMEGAN_MAX_QUEUED_PER_CLIENT": "3"}) == {}  # an explicit setting stays
    setup = clients.setup(["overload"], 156, {}, embedded=True)
    assert setup.keys is None
    assert setup.stack_env({"A": "1"}, None) == {"A": "1", "ANIMEGAN_MAX_QUEUED_PER_CLIENT": "156"}
    assert "one address" in setup.notes["ANIMEGAN_MAX_QUEUED_PER_CLIENT"]
    assert clients.setup(["overload"], 156, {}, embedded=False).overrides == {}  # a service we did not start


def test_the_quota_setting_is_read_and_bad_values_refused() -> None:
    assert clients.quota({}) == 10
    assert clients.quota({"ANIMEGAN_MAX_QUEUED_PER_CLIENT": " 4 "}) == 4
    for bad in ("ten", "0"):
        with pytest.raises(ValueError, match="ANIMEGAN_MAX_QUEUED_PER_CLIENT"):
            clients.quota({"ANIMEGAN_MAX_QUEUED_PER_CLIENT": bad})
    with pytest.raises(ValueError, match="ANIMEGAN_MAX_QUEUED_PER_CLIENT"):
        clients.setup(["tenants"], 13, {"ANIMEGAN_MAX_QUEUED_PER_CLIENT": "x"}, embedded=True)


def test_the_embedded_stack_gets_a_keys_file_the_gateway_parses_with_digests_only(tmp_path: Path) -> None:
    setup = clients.setup(["tenants"], 13, {}, embedded=True)
    assert setup.keys is not None
    keys = setup.keys.keys
    assert set(keys) == {"flood", "steady", clients.OBSERVER}
    assert len(set(keys.values())) == 3
    env = setup.stack_env({}, tmp_path)
    path = Path(env["ANIMEGAN_API_KEYS_FILE"])
    assert path.parent == tmp_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert not any(key in text for key in keys.values())
    entries = {entry.name: entry.digest.hex() for entry in parse_keys(text, str(path))}  # the gateway's parser
    assert entries == {name: key_digest(key) for name, key in keys.items()}
    assert setup.keys.observer == keys[clients.OBSERVER]
    assert "ANIMEGAN_API_KEYS_FILE" in setup.notes
    assert setup.overrides == {}  # the quota under test stays the service's


def test_against_a_url_the_tenants_keys_come_from_the_environment() -> None:
    env = {"ANIMEGAN_LOADTEST_KEY_FLOOD": "kf", "ANIMEGAN_LOADTEST_KEY_STEADY": "ks"}
    setup = clients.setup(["tenants"], 13, env, embedded=False)
    assert setup.keys is not None
    assert setup.keys.locust_env() == env
    assert setup.keys.observer is None
    with pytest.raises(ValueError, match="ANIMEGAN_LOADTEST_KEY_STEADY"):
        clients.setup(["tenants"], 13, {"ANIMEGAN_LOADTEST_KEY_FLOOD": "kf"}, embedded=False)
    with pytest.raises(ValueError, match="different keys"):
        clients.TenantKeys.from_env({"ANIMEGAN_LOADTEST_KEY_FLOOD": "k", "ANIMEGAN_LOADTEST_KEY_STEADY": "k"})
