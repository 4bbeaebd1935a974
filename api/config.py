"""ApiSettings: every knob of the gateway process, read once from ``ANIMEGAN_*``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from jobstore.settings import SharedSettings, describe_errors

MiB = 1024 * 1024

# Redis's own size units (redis.conf): k/m/g are powers of 1000, kb/mb/gb powers of 1024.
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def parse_size(value: object) -> int:
    """``512mb`` / ``1gb`` / ``100000000`` -> bytes, read as redis.conf reads sizes; refuses anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", str(value).lower())
        if not match or match.group(2) not in _SIZE_UNITS:
            raise ValueError(f"not a size: {value!r} (examples: 512mb, 2gb, 0 for no limit)")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size < 0:
        raise ValueError(f"a size cannot be negative: {value!r}")
    return size


class ApiSettings(SharedSettings):
    """Settings of the gateway (``animegan api`` / ``uvicorn --factory api.main:create_app``)."""

    default_format: Literal["png", "jpeg", "webp"] = "png"
    max_upload_bytes: int = Field(default=5 * MiB, ge=1024)
    max_side: int = Field(default=1024, ge=16, le=8192)
    max_pixels: int = Field(default=40_000_000, ge=1)
    input_ttl_s: int = Field(default=3600, ge=1)
    result_ttl_s: int = Field(default=3600, ge=1)
    record_ttl_s: int = Field(default=3600, ge=1)
    max_queue_depth: int = Field(default=50, ge=1)
    decode_concurrency: int = Field(default=2, ge=1)
    max_concurrent_uploads: int = Field(default=8, ge=1)
    # A 5 MiB upload over a 1 Mbit/s link takes about 42 s: room for slow clients, none for a trickle.
    upload_timeout_s: float = Field(default=60.0, gt=0)
    # The store's budget when Redis reports maxmemory 0 (0: none, admission does not look at memory then).
    store_budget_bytes: int = 0

    @field_validator("store_budget_bytes", mode="before")
    @classmethod
    def _parse_size(cls, value: object) -> int:
        return parse_size(value)


def load_api_settings() -> ApiSettings:
    """Read the environment; a bad value stops the process with one line naming the variable."""
    try:
        return ApiSettings()
    except ValidationError as exc:
        raise SystemExit(f"animegan api: invalid configuration: {describe_errors(exc)}") from None
