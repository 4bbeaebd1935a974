"""ApiSettings: every knob of the gateway process, read once from ``ANIMEGAN_*``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError

from jobstore.settings import SharedSettings, describe_errors
from jobstore.webhook_settings import WebhookSettings

MiB = 1024 * 1024


class ApiSettings(SharedSettings, WebhookSettings):
    """Settings of the gateway (``animegan api`` / ``uvicorn --factory api.main:create_app``)."""

    default_format: Literal["png", "jpeg", "webp"] = "png"
    max_upload_bytes: int = Field(default=5 * MiB, ge=1024)
    max_side: int = Field(default=1024, ge=16, le=8192)
    max_pixels: int = Field(default=40_000_000, ge=1)
    input_ttl_s: int = Field(default=3600, ge=1)
    result_ttl_s: int = Field(default=3600, ge=1)
    record_ttl_s: int = Field(default=3600, ge=1)
    max_queue_depth: int = Field(default=50, ge=1)
    # Jobs one client may have queued or running at once; beyond it 429 client-quota.
    max_queued_per_client: int = Field(default=10, ge=1)
    decode_concurrency: int = Field(default=2, ge=1)
    max_concurrent_uploads: int = Field(default=8, ge=1)
    # A 5 MiB upload over a 1 Mbit/s link takes about 42 s: room for slow clients, none for a trickle.
    upload_timeout_s: float = Field(default=60.0, gt=0)


def load_api_settings() -> ApiSettings:
    """Read the environment; a bad value stops the process with one line naming the variable."""
    try:
        return ApiSettings()
    except ValidationError as exc:
        raise SystemExit(f"animegan api: invalid configuration: {describe_errors(exc)}") from None
