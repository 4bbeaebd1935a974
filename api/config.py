"""ApiSettings: every knob of the gateway process, read once from ``ANIMEGAN_*``."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


class ApiSettings(BaseSettings):
    """Settings of the gateway (``animegan api`` / ``uvicorn --factory api.main:create_app``)."""

    model_config = SettingsConfigDict(env_prefix="ANIMEGAN_", extra="ignore")

    redis_url: str = "redis://redis:6379/0"
    broker_url: str | None = None
    default_style: str = "face_paint_512_v2"
    styles: Annotated[list[str], NoDecode] = Field(default_factory=list)
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
    log_format: Literal["json", "text"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("styles", mode="before")
    @classmethod
    def _split_styles(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.styles:
            self.styles = [self.default_style]
        if self.default_style not in self.styles:
            raise ValueError(f"default_style {self.default_style!r} is not in styles {self.styles}")
        return self

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url


def load_api_settings() -> ApiSettings:
    """Read the environment; a bad value stops the process with one line naming the variable."""
    try:
        return ApiSettings()
    except ValidationError as exc:
        raise SystemExit(f"animegan api: invalid configuration: {describe_errors(exc)}") from None


def describe_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"ANIMEGAN_{'_'.join(str(p) for p in err['loc']).upper()}: {message}" if err["loc"] else message)
    return "; ".join(parts)
