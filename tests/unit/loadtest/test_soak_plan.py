"""``animegan loadtest soak``'s plan: 30 minutes by default, paced from --rate (the probe is skipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.runner import build_parser, locust_command, locust_env, make_plan, pace_soak


def test_soak_defaults_to_thirty_minutes_of_sixteen_paced_users(tmp_path: Path) -> None:
    args = build_parser().parse_args(["soak", "--rate", "24"])
    plan = make_plan(args)
    assert plan.duration_s == 1800
    assert plan.users == 16
    meta: dict[str, Any] = {}
    paced = pace_soak(plan, "http://127.0.0.1:1", tmp_path, args, None, meta)
    assert paced.pace_s == 40.0  # 16 users, one job each every 40 s: 24 jobs a minute
    assert paced.spawn_rate == 0.4  # one user started every 2.5 s: arrivals spread over the pace, not a burst
    assert meta["capacity"] == {"given_rate": True, "rate_per_min": 24.0}
    assert "16 users (spawn 0.4/s), one job per user every 40.0 s" in meta["load"]
    assert locust_env(paced, tmp_path, args)["ANIMEGAN_LOADTEST_PACE_S"] == "40"
    assert locust_command(paced, "http://x", tmp_path)[-1] == "SoakUser"
    assert not (tmp_path / "capacity").exists()  # no probe ran


def test_other_scenarios_are_not_paced(tmp_path: Path) -> None:
    args = build_parser().parse_args(["mixed"])
    plan = make_plan(args)
    assert plan.pace_s is None
    assert "ANIMEGAN_LOADTEST_PACE_S" not in locust_env(plan, tmp_path, args)
