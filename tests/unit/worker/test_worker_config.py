"""WorkerSettings: defaults, validation, and the threads and pinning arithmetic."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from worker.config import WorkerSettings, available_cores
from worker.runtime import Runtime


def test_defaults_are_consistent() -> None:
    settings = WorkerSettings()
    assert settings.styles == [settings.default_style]
    assert settings.task_soft_time_limit_s < settings.task_time_limit_s
    assert settings.task_time_limit_s * 2 <= settings.visibility_timeout_s
    assert settings.broker == settings.redis_url


def test_styles_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIMEGAN_STYLES", "hayao, paprika")
    monkeypatch.setenv("ANIMEGAN_DEFAULT_STYLE", "paprika")
    assert WorkerSettings().styles == ["hayao", "paprika"]


@pytest.mark.parametrize(
    "changes",
    [
        {"task_soft_time_limit_s": 30, "task_time_limit_s": 30},
        {"task_time_limit_s": 400, "visibility_timeout_s": 600},
        {"default_style": "hayao", "styles": ["paprika"]},
        {"worker_concurrency": 0},
    ],
)
def test_inconsistent_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WorkerSettings.model_validate(changes)


def test_bad_environment_stops_with_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.config import load_worker_settings

    monkeypatch.setenv("ANIMEGAN_MAX_ATTEMPTS", "zero")
    with pytest.raises(SystemExit) as stopped:
        load_worker_settings()
    message = str(stopped.value.code)
    assert "ANIMEGAN_MAX_ATTEMPTS" in message
    assert "\n" not in message


def test_threads_split_the_cores_between_children() -> None:
    cores = available_cores()
    assert Runtime(WorkerSettings(worker_concurrency=1)).threads == cores
    assert Runtime(WorkerSettings(worker_concurrency=cores * 2)).threads == 1
    assert Runtime(WorkerSettings(worker_concurrency=1, threads=3)).threads == 3


def test_pinning_happens_only_with_one_child_per_core() -> None:
    before = os.sched_getaffinity(0)
    try:
        Runtime(WorkerSettings(worker_concurrency=len(before) + 1)).pin_cpu(0)
        assert os.sched_getaffinity(0) == before
        if len(before) > 1:
            Runtime(WorkerSettings(worker_concurrency=len(before))).pin_cpu(1)
            assert os.sched_getaffinity(0) == {sorted(before)[1]}
    finally:
        os.sched_setaffinity(0, before)


def test_precision_defaults_to_auto_and_refuses_unknown_values() -> None:
    assert WorkerSettings().precision == "auto"
    with pytest.raises(ValidationError, match="precision"):
        WorkerSettings(precision="fp16")  # type: ignore[arg-type]


def test_a_precision_this_cpu_cannot_run_stops_the_worker_with_one_line() -> None:
    from inference.precision import bf16_runtime_installed, cpu_flags, has_native_bf16
    from worker.celery_app import check_precision

    check_precision(WorkerSettings(precision="fp32"))  # always possible
    if has_native_bf16(cpu_flags()) and bf16_runtime_installed():
        check_precision(WorkerSettings(precision="bf16"))  # the CPU at hand runs it: no error
    else:
        with pytest.raises(SystemExit, match="animegan worker: Precision bf16 needs a CPU with native bf16"):
            check_precision(WorkerSettings(precision="bf16"))
