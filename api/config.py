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
    """Output format when a request names none: `png`, `jpeg` or `webp`."""
    max_upload_bytes: int = Field(default=5 * MiB, ge=1024)
    """Largest image accepted, in bytes (5 MiB); the request body may be 16 KiB larger (form framing).
    Over it: 413 `image-too-large`, decided from `Content-Length` before any of the body is read, or
    while the body streams in."""
    max_side: int = Field(default=1024, ge=16, le=8192)
    """The gateway downscales (LANCZOS) so the longest side is at most this before queueing. Worker
    time and memory grow with its square."""
    max_pixels: int = Field(default=40_000_000, ge=1)
    """Largest pixel count an upload may declare (decompression-bomb guard, checked from the header).
    Over it: 422 `too-many-pixels`. `ANIMEGAN_DECODE_MEMORY_BYTES` lowers the limit of formats that
    cost more to decode (WebP: about 13 megapixels with the defaults)."""
    input_ttl_s: int = Field(default=3600, ge=1)
    """Seconds a queued input is kept; a job still waiting after that fails with `input-expired`."""
    result_ttl_s: int = Field(default=3600, ge=1)
    """Seconds a result image is kept after the job finished."""
    record_ttl_s: int = Field(default=3600, ge=1)
    """Seconds a job record is kept, counted from creation and again from completion. Also the life of
    an `Idempotency-Key`."""
    max_queue_depth: int = Field(default=50, ge=1)
    """Waiting jobs at which new uploads get 503 `queue-full` with `Retry-After` (identical uploads are
    still answered from their job)."""
    max_queued_per_client: int = Field(default=10, ge=1)
    """Jobs one client (API key, else address) may have queued or running at once; beyond it 429
    `client-quota` with `Retry-After`."""
    max_batch_files: int = Field(default=20, ge=1)
    """Image parts one `POST /batches` may carry (more: 422 `too-many-files`). A batch's body may be
    this many times `ANIMEGAN_MAX_UPLOAD_BYTES` (plus 16 KiB), so it also bounds what one batch holds
    in the gateway's memory."""
    decode_concurrency: int = Field(default=2, ge=1)
    """Uploads decoded at once per API process (threads; memory is bounded by
    `ANIMEGAN_DECODE_MEMORY_BYTES`)."""
    decode_memory_bytes: int = Field(default=256 * MiB, ge=64 * MiB)
    """Memory the decodes of one API process may hold at once, weighed from each image's header before
    it is decoded (`512mb`, `1gb` as for the store budget; at least 64 MiB). Uploads wait their turn,
    first come first served; one that needs more than the whole budget gets 422 `too-many-pixels`.
    The default keeps the gateway under 400 MB in the 512 MB container of `docker-compose.yml`."""
    # nginx's default buffers hold 32 KiB of headers; cookies fit.
    max_header_bytes: int = Field(default=32 * 1024, ge=4096)
    """Bytes of a request's line and headers together; over it the server answers 431
    `headers-too-large` and closes the connection (a head still arriving is cut at the limit). Needs
    the gateway's HTTP protocol (`animegan api`, `animegan serve` and the container select it)."""
    max_concurrent_uploads: int = Field(default=8, ge=1)
    """Request bodies received at once per API process; beyond it 503 `too-many-uploads` (bounds the
    gateway's memory under an upload storm)."""
    # A 5 MiB upload over a 1 Mbit/s link takes about 42 s: room for slow clients, none for a trickle.
    upload_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds a request body may take to arrive; a client trickling its upload gets 408
    `request-timeout`."""
    # Multi-tenant edge (docs/operations/public-deployment.md): keys, the addresses of trusted proxies, the
    # per-client request rate, where /metrics is served, whether the API docs are served at all.
    api_keys_file: Path | None = None
    """File of `NAME SHA256HEX` lines (`animegan keys new NAME`). Set, every route but `/healthz`,
    `/readyz` and the page's own files needs `Authorization: Bearer <key>` (401 `unauthorized`
    otherwise). Re-read within a second of a change; an event stream whose key was revoked ends within
    about a second. A malformed line stops the gateway at start, naming the line. Unset: no keys, the
    service is open."""
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated addresses or CIDR networks of your reverse proxies. Only from these peers is
    `X-Forwarded-For` believed: the client is the right-most address in it that is not itself a trusted
    proxy."""
    # Off by default: without keys a client is an address, and one address may be a whole office
    # behind NAT, a load test or a test suite polling at 10 Hz. docs/operations/public-deployment.md sets
    # 120/minute (2/s sustained, bursts of 120: a page following a job needs about 5 requests plus
    # at most one poll a second).
    rate_limit: str = "off"
    """Requests per client, shared by every gateway replica through Redis: `N/second`, `N/minute`,
    `N/hour` or `N/day` (bursts of N allowed), empty or `off` to disable. Over it: 429 `rate-limited`
    with `Retry-After`. A public deployment sets `120/minute`."""
    api_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Serve the gateway's `/metrics` on this port instead of the public one (which then answers 404).
    No key is asked there: keep it on an internal network."""
    api_metrics_host: str = "0.0.0.0"  # the metrics port is for the internal network: all interfaces
    """Address the metrics port listens on."""
    docs: bool = True
    """`false` turns off `/docs`, `/redoc` and `/openapi.json` (404)."""
    result_redirect: bool = False
    """With object storage: `true` makes `GET /jobs/{id}/result` answer 303 to the presigned link, not the bytes."""

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

    max_video_bytes: int = Field(default=100 * MiB, ge=1024)
    """Largest clip `POST /videos` accepts, in bytes (`104857600`, `100mb`); refused while it streams with 413
    `video-too-large`. The gateway never holds the clip whole: it goes to the store as it arrives."""
    max_video_seconds: float = Field(default=60.0, gt=0, le=3600)
    """Longest clip `POST /videos` accepts, in seconds (from its frames' timestamps); longer: 422
    `video-too-long`. A clip also needs no more segments (about 2 s each) than the queue depth and the
    per-client quota allow."""
    video_max_side: int = Field(default=720, ge=16, le=4096)
    """Longest side of a stylized video's frames: larger clips are downscaled like photos (aspect kept,
    even sides), never upscaled."""
    video_upload_timeout_s: float = Field(default=600.0, gt=0)
    """Seconds a `POST /videos` body may take to arrive in full (a 100 MiB clip over a 10 Mbit/s link takes
    about 84 s); later: 408 `request-timeout`."""
    max_event_streams: int = Field(default=1000, ge=1)
    """`GET /jobs/{id}/events` streams open at once per API process; beyond it 429 `too-many-streams`
    with `Retry-After`."""
    max_event_streams_per_client: int = Field(default=20, ge=1)
    """Event streams one client may hold open per API process (a client is its API key, else its
    address); beyond it 429 `too-many-streams`."""
    store_budget_bytes: int = 0
    """Memory budget of the job store, for a Redis that reports no `maxmemory` (a managed Redis, say):
    `536870912`, `512mb`, `2gb` (Redis's units: `mb` = 2^20, `m` = 10^6). `0`: Redis's `maxmemory` is
    the budget, and with neither admission does not look at memory."""

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
