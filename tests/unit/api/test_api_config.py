"""ApiSettings: defaults, validation, one-line startup errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.config import ApiSettings, load_api_settings


def test_defaults() -> None:
    settings = ApiSettings()
    assert settings.max_upload_bytes == 5 * 1024 * 1024
    assert settings.max_side == 1024
    assert settings.input_ttl_s == settings.result_ttl_s == settings.record_ttl_s == 3600
    assert settings.styles == [settings.default_style]
    assert settings.broker == settings.redis_url


def test_styles_and_broker_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIMEGAN_STYLES", "hayao,paprika")
    monkeypatch.setenv("ANIMEGAN_DEFAULT_STYLE", "hayao")
    monkeypatch.setenv("ANIMEGAN_BROKER_URL", "redis://broker:6379/1")
    settings = ApiSettings()
    assert settings.styles == ["hayao", "paprika"]
    assert settings.broker == "redis://broker:6379/1"


@pytest.mark.parametrize(
    "changes",
    [
        {"default_style": "hayao", "styles": ["paprika"]},
        {"default_format": "gif"},
        {"max_queue_depth": 0},
        {"decode_concurrency": 0},
        {"record_ttl_s": 0},
    ],
)
def test_bad_values_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ApiSettings.model_validate(changes)


def test_bad_environment_stops_with_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIMEGAN_MAX_UPLOAD_BYTES", "lots")
    with pytest.raises(SystemExit) as stopped:
        load_api_settings()
    message = str(stopped.value.code)
    assert message.startswith("animegan api: invalid configuration: ANIMEGAN_MAX_UPLOAD_BYTES")
    assert "\n" not in message
