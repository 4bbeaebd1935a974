"""Who the simulated users are to the service: the per-client quota they share, and the tenants' API keys.

Every locust user sends from the runner's address, so to the service they are one client. Scenarios that
are not about tenants measure the service as a whole: on the stack the runner starts, it raises
``ANIMEGAN_MAX_QUEUED_PER_CLIENT`` to the number of users (each has at most one job in flight), so the
quota never refuses them and they measure what they did before it existed. An explicit setting in the
environment is kept. The ``tenants`` scenario is about the quota: its two tenants get API keys, made here.

Keys reach locust through its environment only (``ANIMEGAN_LOADTEST_KEY_FLOOD``, ``..._STEADY``); the stack
gets a keys file of their SHA-256 digests (the format of ``ANIMEGAN_API_KEYS_FILE``), which opens nothing.
Standard library only: the runner imports no api code.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

QUOTA_VAR = "ANIMEGAN_MAX_QUEUED_PER_CLIENT"
KEYS_FILE_VAR = "ANIMEGAN_API_KEYS_FILE"
DEFAULT_QUOTA = 10  # the service's default ANIMEGAN_MAX_QUEUED_PER_CLIENT
TENANT_KEY_VARS = {"flood": "ANIMEGAN_LOADTEST_KEY_FLOOD", "steady": "ANIMEGAN_LOADTEST_KEY_STEADY"}
# The sampler's own key for /metrics (which needs one once a keys file is set): not one of the tenants.
OBSERVER = "loadtest-observer"
FLOOD_EXTRA_USERS = 2  # flood users beyond its quota: always some of them refused with 429


def quota(env: Mapping[str, str]) -> int:
    """The per-client quota the service runs with (its default when the environment sets none)."""
    text = env.get(QUOTA_VAR, "").strip()
    try:
        value = int(text) if text else DEFAULT_QUOTA
    except ValueError:
        raise ValueError(f"{QUOTA_VAR}={text!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{QUOTA_VAR}={text!r} must be at least 1")
    return value


def tenant_users(env: Mapping[str, str]) -> int:
    """Default users of ``tenants``: flood gets its quota plus a few (so it meets 429s), steady one."""
    return quota(env) + FLOOD_EXTRA_USERS + 1


def raised_quota(users: int, env: Mapping[str, str]) -> dict[str, str]:
    """The override for a stack the runner starts for a one-address scenario: ``{}`` when the env sets it."""
    if env.get(QUOTA_VAR, "").strip():
        return {}
    return {QUOTA_VAR: str(max(DEFAULT_QUOTA, users))}


def key_digest(key: str) -> str:
    """The hex SHA-256 of a key, as a keys file holds it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TenantKeys:
    """The keys of one run: one per tenant, and the sampler's."""

    keys: dict[str, str]  # name -> key

    @classmethod
    def generate(cls) -> TenantKeys:
        names = [*TENANT_KEY_VARS, OBSERVER]
        return cls({name: "agk_" + secrets.token_urlsafe(32) for name in names})

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TenantKeys:
        """The tenants' keys for a service the runner did not start; ValueError names what is missing."""
        missing = [var for var in TENANT_KEY_VARS.values() if not env.get(var)]
        if missing:
            raise ValueError(
                f"tenants against --url needs each tenant's API key of that service: set {' and '.join(missing)}"
            )
        keys = {name: env[var] for name, var in TENANT_KEY_VARS.items()}
        if keys["flood"] == keys["steady"]:
            raise ValueError("the two tenants need different keys (the same key is one client)")
        return cls(keys)

    @property
    def observer(self) -> str | None:
        return self.keys.get(OBSERVER)

    def keys_file_text(self) -> str:
        """``NAME SHA256HEX`` lines for ``ANIMEGAN_API_KEYS_FILE``."""
        lines = [f"{name} {key_digest(key)}" for name, key in self.keys.items()]
        return "# written by animegan loadtest tenants for its embedded stack\n" + "\n".join(lines) + "\n"

    def write_keys_file(self, folder: Path) -> Path:
        """The keys file, readable by this user only; the caller removes ``folder`` after the run."""
        path = folder / "api-keys"
        path.write_text(self.keys_file_text())
        path.chmod(0o600)
        return path

    def locust_env(self) -> dict[str, str]:
        """What the locust process gets: each tenant's key under its variable."""
        return {var: self.keys[name] for name, var in TENANT_KEY_VARS.items()}


@dataclass(frozen=True)
class ClientSetup:
    """What the run's clients need: the tenants' keys, and settings for the stack the runner starts."""

    keys: TenantKeys | None
    overrides: dict[str, str]  # variable -> value, for the embedded stack only
    notes: dict[str, str]  # variable -> why the runner set it, for the report

    def stack_env(self, env: Mapping[str, str], keys_dir: Path | None) -> dict[str, str]:
        """The embedded stack's environment: ``env`` with the overrides and (tenants) the keys file."""
        stack = {**env, **self.overrides}
        if self.keys is not None and keys_dir is not None:
            stack[KEYS_FILE_VAR] = str(self.keys.write_keys_file(keys_dir))
        return stack


def setup(scenarios: list[str], users: int, env: Mapping[str, str], *, embedded: bool) -> ClientSetup:
    """Keys and settings for a run; ValueError (one line) when ``tenants`` lacks its keys or the quota is bad."""
    if "tenants" in scenarios:
        quota(env)  # refuse a malformed setting before anything starts
        if not embedded:
            return ClientSetup(TenantKeys.from_env(env), {}, {})
        why = f"set by the runner: a temporary file with the SHA-256 of the run's keys ({', '.join(TENANT_KEY_VARS)}"
        return ClientSetup(TenantKeys.generate(), {}, {KEYS_FILE_VAR: why + f", {OBSERVER}), removed afterwards"})
    overrides = raised_quota(users, env) if embedded else {}
    notes = {}
    if overrides:
        notes[QUOTA_VAR] = (
            f"set by the runner (default {DEFAULT_QUOTA}): all {users} users send from one address, one job in "
            "flight each, so the per-client quota refuses none of them"
        )
    return ClientSetup(None, overrides, notes)
