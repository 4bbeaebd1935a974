"""Settings the gateway and the workers both read: same ``ANIMEGAN_*`` names, same checks.

``ApiSettings`` and ``WorkerSettings`` extend ``SharedSettings``, so a shared value (the Redis
URL, the styles, logging, the object store: ``jobstore.storage_settings``) is declared and validated
once and cannot drift between the two. Imports pydantic only.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from jobstore.storage_settings import StorageSettings


class SharedSettings(StorageSettings):
    # A docstring under a field is its description: the docs site's settings reference is made from it.
    model_config = SettingsConfigDict(env_prefix="ANIMEGAN_", extra="ignore", use_attribute_docstrings=True)

    redis_url: str = "redis://redis:6379/0"
    """Redis holding the job store (and the broker unless `ANIMEGAN_BROKER_URL` is set). `animegan serve`
    starts a private Redis when this is unset."""
    broker_url: str | None = None
    """Celery broker, if it should be another Redis or database. Unset: `ANIMEGAN_REDIS_URL`."""
    default_style: str = "face_paint_512_v2"
    """Style used when a request names none; must be in `ANIMEGAN_STYLES`. `animegan serve --style` sets
    it to the first style given."""
    styles: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated styles offered. The API accepts only these; each worker child loads all of them
    at start. Unset: the default style alone. `animegan serve --style` sets it."""
    log_format: Literal["json", "text"] = "text"
    """`text` for terminals, `json` (one object per line) for containers."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """`DEBUG`, `INFO`, `WARNING` or `ERROR`."""

    @field_validator("styles", mode="before")
    @classmethod
    def _split_styles(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @model_validator(mode="after")
    def _check_styles(self) -> Self:
        if not self.styles:
            self.styles = [self.default_style]
        if self.default_style not in self.styles:
            raise ValueError(f"default_style {self.default_style!r} is not in styles {self.styles}")
        return self

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url


def describe_errors(exc: ValidationError) -> str:
    """One line naming each bad variable, for a process that refuses to start."""
    parts = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"ANIMEGAN_{'_'.join(str(p) for p in err['loc']).upper()}: {message}" if err["loc"] else message)
    return "; ".join(parts)
