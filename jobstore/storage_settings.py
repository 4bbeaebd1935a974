"""Where the job store keeps image bytes: Redis (the default) or an S3-compatible bucket (``ANIMEGAN_S3_*``).

``SharedSettings`` extends ``StorageSettings``, so the gateway and the workers read the same bucket,
prefix and timeouts. Credentials and the region are not settings of ours: the object store client
reads the standard AWS chain (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION``, web identity, instance metadata). Imports pydantic only.
"""

from __future__ import annotations

from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseSettings):
    # A docstring under a field is its description: the docs site's settings reference is made from it.
    model_config = SettingsConfigDict(env_prefix="ANIMEGAN_", extra="ignore", use_attribute_docstrings=True)

    s3_bucket: str | None = None
    """Set: inputs and results live in this bucket and Redis keeps only records, queues and leases."""
    s3_endpoint_url: str | None = None
    """Any S3-compatible server (SeaweedFS, Ceph, R2, ...); unset: AWS, in `AWS_REGION`."""
    s3_public_endpoint_url: str | None = None
    """The endpoint presigned links name, where clients reach the store by another address; unset: the endpoint."""
    s3_prefix: str = ""
    """Object keys go under this prefix: `{prefix}input/{id}`, `{prefix}result/{id}`."""
    s3_url_ttl_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    """Seconds a presigned download link is valid (never past the result's own expiry)."""
    s3_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Seconds one store request may take: a store that does not answer in time is unavailable, not awaited."""
    s3_connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    """Seconds to connect to the store."""

    @field_validator("s3_bucket", "s3_endpoint_url", "s3_public_endpoint_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("s3_endpoint_url", "s3_public_endpoint_url", mode="after")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{value!r} is not an http(s) URL (e.g. http://seaweedfs:8333)")
        return value.rstrip("/") if value else value

    @field_validator("s3_prefix", mode="after")
    @classmethod
    def _normalise_prefix(cls, value: str) -> str:
        value = value.strip().strip("/")
        return f"{value}/" if value else ""

    @model_validator(mode="after")
    def _check_store(self) -> Self:
        if self.s3_bucket is None and (self.s3_endpoint_url or self.s3_public_endpoint_url):
            raise ValueError("ANIMEGAN_S3_ENDPOINT_URL is set but ANIMEGAN_S3_BUCKET is not: name the bucket")
        return self

    @property
    def object_store_enabled(self) -> bool:
        return self.s3_bucket is not None
