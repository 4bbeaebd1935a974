"""The webhook settings the gateway and the workers both read (same ``ANIMEGAN_WEBHOOK_*`` names).

``ApiSettings`` and ``WorkerSettings`` both mix in ``WebhookSettings``, so the secret and the
private-address opt-in are declared and checked once. Imports pydantic only.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 16


class WebhookSettings(BaseSettings):
    # A docstring under a field is its description (the docs site's settings reference).
    model_config = SettingsConfigDict(env_prefix="ANIMEGAN_", extra="ignore", use_attribute_docstrings=True)

    # Unset, an unsigned POST never leaves the service.
    webhook_secret: SecretStr | None = None
    """Key of the webhook signatures (HMAC-SHA256), at least 16 characters; the same on the gateway and
    the workers. Unset: `callback_url` is refused (422) and workers send nothing."""
    # Off by default: it is what stops SSRF.
    webhook_allow_private: bool = False
    """`true` lets callbacks reach loopback, private, link-local and other non-public addresses (the
    SSRF rules are off; the URL rules stay): tests, receivers inside the same network."""
    webhook_resolve_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """Seconds to resolve a callback host, at submit time and before each attempt."""

    @field_validator("webhook_secret", mode="after")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters (use e.g. `openssl rand -hex 32`)")
        return value

    @property
    def webhooks_enabled(self) -> bool:
        return self.webhook_secret is not None
