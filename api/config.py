"""ApiSettings: every knob of the gateway process, read once from ``ANIMEGAN_*``."""

from __future__ import annotations

import re
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import NoDecode

from api.tenancy.keys import KeysFileError, read_keys_file
from api.tenancy.rate_rule import RateRule, parse_rate
from jobstore.settings import SharedSettings, describe_errors
from jobstore.webhook_settings import WebhookSettings

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
    # Image parts one POST /batches may carry (its body may be this many times max_upload_bytes).
    max_batch_files: int = Field(default=20, ge=1)
    decode_concurrency: int = Field(default=2, ge=1)
    # Bytes the decodes in flight may hold at once (api.edge.decode_budget); an image needing more is
    # refused. 256 MiB keeps the gateway under 400 MB in the compose file's 512 MB container.
    decode_memory_bytes: int = Field(default=256 * MiB, ge=64 * MiB)
    # The request line and headers together (nginx's default buffers hold 32 KiB; cookies fit).
    max_header_bytes: int = Field(default=32 * 1024, ge=4096)
    max_concurrent_uploads: int = Field(default=8, ge=1)
    # A 5 MiB upload over a 1 Mbit/s link takes about 42 s: room for slow clients, none for a trickle.
    upload_timeout_s: float = Field(default=60.0, gt=0)
    # Multi-tenant edge (README "Public deployment"): keys, the addresses of trusted proxies, the
    # per-client request rate, where /metrics is served, whether the API docs are served at all.
    api_keys_file: Path | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Off by default: without keys a client is an address, and one address may be a whole office
    # behind NAT, a load test or a test suite polling at 10 Hz. README "Public deployment" sets
    # 120/minute (2/s sustained, bursts of 120: a page following a job needs about 5 requests plus
    # at most one poll a second).
    rate_limit: str = "off"
    api_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    api_metrics_host: str = "0.0.0.0"  # the metrics port is for the internal network: all interfaces
    docs: bool = True

    @field_validator("api_keys_file")
    @classmethod
    def _check_keys_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                read_keys_file(value)
            except KeysFileError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(value, list):
            for entry in value:
                try:
                    ip_network(str(entry), strict=False)
                except ValueError:
                    raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @property
    def rate_rule(self) -> RateRule | None:
        """The per-client request rate, or None when ANIMEGAN_RATE_LIMIT is empty or ``off``."""
        return parse_rate(self.rate_limit)

    # POST /videos (README "Video"): the clip's bytes (refused while it streams), its duration, the
    # longest side of the stylized frames, and how long its body may take to arrive (a 100 MiB clip
    # over a 10 Mbit/s link takes about 84 s).
    max_video_bytes: int = Field(default=100 * MiB, ge=1024)
    max_video_seconds: float = Field(default=60.0, gt=0, le=3600)
    video_max_side: int = Field(default=720, ge=16, le=4096)
    video_upload_timeout_s: float = Field(default=600.0, gt=0)

    # Open GET /jobs/{id}/events streams per gateway process, and per client within it.
    max_event_streams: int = Field(default=1000, ge=1)
    max_event_streams_per_client: int = Field(default=20, ge=1)
    # The store's budget when Redis reports maxmemory 0 (0: none, admission does not look at memory then).
    store_budget_bytes: int = 0

    @field_validator("store_budget_bytes", "decode_memory_bytes", "max_video_bytes", mode="before")
    @classmethod
    def _parse_size(cls, value: object) -> int:
        return parse_size(value)


def load_api_settings() -> ApiSettings:
    """Read the environment; a bad value stops the process with one line naming the variable."""
    try:
        return ApiSettings()
    except ValidationError as exc:
        raise SystemExit(f"animegan api: invalid configuration: {describe_errors(exc)}") from None
