"""The runner's command line: scenarios, durations, the step ramp, the locust command it builds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from loadtest.runner import (
    LOCUSTFILE,
    Plan,
    build_parser,
    locust_command,
    locust_env,
    make_plan,
    overload_users,
    parse_duration,
    ramp,
    service_settings,
)


def plan_for(*argv: str) -> tuple[argparse.Namespace, Plan]:
    args = build_parser().parse_args(list(argv))
    return args, make_plan(args)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("2.5", 2.5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "m", "1d"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_ramp_doubles_up_to_the_users_asked() -> None:
    assert ramp(1) == [1]
    assert ramp(8) == [1, 2, 4, 8]
    assert ramp(10) == [1, 2, 4, 8, 10]


def test_classic_is_a_step_ramp_sharing_the_duration() -> None:
    _, plan = plan_for("classic", "--users", "10", "--duration", "5m")
    assert plan.steps == [1, 2, 4, 8, 10]
    assert plan.step_s == pytest.approx(60.0)
    assert plan.duration_s == pytest.approx(300.0)
    assert plan.hard_timeout_s == pytest.approx(300.0 + 120.0 + 60.0)


def test_classic_flat_and_explicit_step_duration() -> None:
    _, flat = plan_for("classic", "--flat", "--duration", "60")
    assert flat.steps is None
    assert flat.users == 10
    _, stepped = plan_for("classic", "--users", "4", "--step-duration", "20s")
    assert stepped.duration_s == pytest.approx(60.0)


def test_scenarios_combine_and_default_their_users() -> None:
    _, plan = plan_for("mixed,dedup")
    assert plan.user_classes == ["MixedSizesUser", "DuplicateUser"]
    assert plan.users == 8
    assert plan.spawn_rate == 8
    assert plan.steps is None


def test_overload_defaults_to_three_times_what_the_service_holds() -> None:
    assert overload_users({"ANIMEGAN_MAX_QUEUE_DEPTH": "10"}, 2) == 36
    assert overload_users({}, 1) == 3 * (50 + 1)
    _, plan = plan_for("overload", "--workers", "2")
    assert plan.users >= 3 * (1 + 2)


def test_unknown_scenario_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["nonsense"])
    assert exit_info.value.code == 2
    assert "choose from classic" in capsys.readouterr().err


def test_locust_command_is_headless_bounded_and_names_the_user_classes(tmp_path: Path) -> None:
    args, plan = plan_for("badinput", "--users", "3", "--duration", "40s", "--photos", str(tmp_path))
    command = locust_command(plan, "http://127.0.0.1:1", tmp_path)
    assert command[:5] == [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    assert "--headless" in command
    assert "--only-summary" in command
    assert command[command.index("-u") + 1] == "3"
    assert command[command.index("-t") + 1] == "40s"
    assert command[-1] == "BadInputUser"
    env = locust_env(plan, tmp_path, args)
    assert env["ANIMEGAN_LOADTEST_OUT"] == str(tmp_path)
    assert env["ANIMEGAN_LOADTEST_PHOTOS"] == str(tmp_path.resolve())
    assert "ANIMEGAN_LOADTEST_STEPS" not in env


def test_step_mode_hands_users_and_time_to_the_shape(tmp_path: Path) -> None:
    args, plan = plan_for("classic", "--users", "2", "--duration", "30s")
    command = locust_command(plan, "http://127.0.0.1:1", tmp_path)
    assert "-u" not in command
    assert "-t" not in command
    env = locust_env(plan, tmp_path, args)
    assert env["ANIMEGAN_LOADTEST_STEPS"] == "1,2"
    assert env["ANIMEGAN_LOADTEST_STEP_S"] == "15"


def test_service_settings_keep_animegan_variables_and_mask_credentials() -> None:
    env = {
        "ANIMEGAN_MAX_SIDE": "256",
        "ANIMEGAN_REDIS_URL": "redis://:secret@host:6379/0",
        "ANIMEGAN_LOADTEST_OUT": "/x",
        "HOME": "/root",
    }
    assert service_settings(env) == {"ANIMEGAN_MAX_SIDE": "256", "ANIMEGAN_REDIS_URL": "redis://***@host:6379/0"}


def test_tenants_defaults_to_the_quota_plus_two_flood_users_and_one_steady(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANIMEGAN_MAX_QUEUED_PER_CLIENT", raising=False)
    _, plan = plan_for("tenants")
    assert plan.user_classes == ["FloodTenantUser", "SteadyTenantUser"]
    assert plan.users == 10 + 2 + 1
    assert plan.steps is None
    assert plan.duration_s == 180
    monkeypatch.setenv("ANIMEGAN_MAX_QUEUED_PER_CLIENT", "4")
    assert plan_for("tenants")[1].users == 7
    assert plan_for("tenants", "--users", "20")[1].users == 20


def test_tenants_runs_alone(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tenants,classic"])
    assert "tenants runs alone" in capsys.readouterr().err


def test_the_tenants_keys_reach_locust_through_its_environment_only(tmp_path: Path) -> None:
    from loadtest.clients import TenantKeys

    args, plan = plan_for("tenants", "--duration", "2m")
    keys = TenantKeys.generate()
    env = locust_env(plan, tmp_path, args, keys)
    assert env["ANIMEGAN_LOADTEST_KEY_FLOOD"] == keys.keys["flood"]
    assert env["ANIMEGAN_LOADTEST_KEY_STEADY"] == keys.keys["steady"]
    command = locust_command(plan, "http://127.0.0.1:1", tmp_path)
    assert command[-2:] == ["FloodTenantUser", "SteadyTenantUser"]
    assert not any(key in " ".join(command) for key in keys.keys.values())
    assert not any("LOADTEST_KEY" in name for name in service_settings(env))  # never into the report
