"""What a load run is asked to do: the scenarios, the command line of ``animegan loadtest``, the plan for locust.

Pure: reads the environment it is given (queue limit, per-client quota) to size the default users; starts
nothing. The runner (``loadtest.runner``) executes a ``Plan``.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from loadtest import clients

# The service's default ANIMEGAN_MAX_QUEUE_DEPTH: what `overload` must exceed when the environment sets none.
DEFAULT_QUEUE_DEPTH = 50


@dataclass(frozen=True)
class Scenario:
    name: str
    user_classes: tuple[str, ...]
    users: int
    duration_s: float
    description: str


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("classic", ("ClassicUser",), 10, 600, "1080x1920 portraits, submit and poll; step ramp 1,2,4,..N"),
        Scenario("mixed", ("MixedSizesUser",), 4, 300, "sizes from 32x32 to 4000x3000"),
        Scenario("overload", ("OverloadUser",), 0, 120, "all at once, 3x (queue limit + workers): 503s expected"),
        Scenario("dedup", ("DuplicateUser",), 4, 120, "the same photos again: answers from the result cache"),
        Scenario("badinput", ("BadInputUser",), 4, 120, "truncated, wrong type, oversize, bombs, bad fields: 4xx"),
        Scenario("soak", ("SoakUser",), 16, 1800, "mixed corpus paced at 80 % of measured capacity, long but bounded"),
        Scenario(
            "tenants",
            ("FloodTenantUser", "SteadyTenantUser"),
            0,
            180,
            "two API keys: 'flood' fills its quota, 'steady' one job at a time; fairness",
        ),
    )
}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h30m`` -> seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 90, 90s, 5m, 1h30m)")
    hours, minutes, seconds = (int(group or 0) for group in parts.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def ramp(users: int) -> list[int]:
    """1, 2, 4, ... up to ``users`` (which is always the last step)."""
    steps, step = [], 1
    while step < users:
        steps.append(step)
        step *= 2
    return [*steps, users]


def scenario_list(text: str) -> list[Scenario]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario {unknown or text!r}; choose from {', '.join(SCENARIOS)}")
    if "tenants" in names and len(names) > 1:
        raise argparse.ArgumentTypeError("tenants runs alone: its checks assume only its two tenants load the service")
    return [SCENARIOS[name] for name in names]


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(
        f"  {s.name:<9} {s.description}" + (f" (default {s.users} users)" if s.users else "")
        for s in SCENARIOS.values()
    )
    parser = argparse.ArgumentParser(
        prog="animegan loadtest",
        description="Load-test the service with locust and write a report folder (report.md, plots, CSVs).",
        epilog=f"scenarios (combine with commas, e.g. dedup,badinput):\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", type=scenario_list, metavar="SCENARIO", help="scenario name(s), see below")
    parser.add_argument(
        "--users", type=int, metavar="N", help="users (classic: top of the step ramp; tenants: 1 steady + N-1 flood)"
    )
    parser.add_argument("--duration", type=parse_duration, metavar="D", help="whole load duration: 90s, 5m, 1h30m")
    parser.add_argument("--url", help="test this running service instead of starting the embedded stack")
    parser.add_argument(
        "--workers", type=int, metavar="N", help="worker processes of the embedded stack (animegan serve)"
    )
    parser.add_argument(
        "--photos", type=Path, metavar="DIR", help="folder of photos to upload (default: generated images)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("loadtest-reports"), metavar="DIR", help="parent folder of the report"
    )
    parser.add_argument("--spawn-rate", type=float, metavar="R", help="users started per second (default: all at once)")
    parser.add_argument("--flat", action="store_true", help="classic: hold --users for the whole run, no ramp")
    parser.add_argument(
        "--step-duration", type=parse_duration, metavar="D", help="classic: time per step (default: split)"
    )
    parser.add_argument(
        "--latency-factor", type=float, default=4.0, metavar="F", help="step is unbounded past p95 > F x step-1 p50"
    )
    parser.add_argument(
        "--stop-timeout", type=parse_duration, default=120.0, metavar="D", help="time for jobs in flight at the end"
    )
    parser.add_argument(
        "--job-timeout", type=parse_duration, default=600.0, metavar="D", help="a client gives up on a job after"
    )
    parser.add_argument(
        "--ready-timeout", type=parse_duration, default=300.0, metavar="D", help="wait this long for /readyz"
    )
    parser.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between samples of /metrics")
    parser.add_argument("--rate", type=float, metavar="JOBS_PER_MIN", help="soak: this arrival rate, no capacity probe")
    parser.add_argument(
        "--share", type=float, default=0.8, metavar="F", help="soak: run at this share of the measured capacity"
    )
    parser.add_argument(
        "--capacity-duration", type=parse_duration, default=180.0, metavar="D", help="soak: length of the probe"
    )
    return parser


@dataclass(frozen=True)
class Plan:
    """What locust is asked to do."""

    scenarios: list[str]
    user_classes: list[str]
    users: int
    spawn_rate: float
    duration_s: float
    steps: list[int] | None
    step_s: float | None
    stop_timeout_s: float
    pace_s: float | None = None  # soak: seconds between two job starts of one user

    @property
    def hard_timeout_s(self) -> float:
        """Past this, locust is killed: the run is bounded whatever happens."""
        return self.duration_s + self.stop_timeout_s + 60

    def describe(self) -> str:
        if self.steps:
            return f"{self.user_classes[0]}, users {','.join(map(str, self.steps))}, {self.step_s:.0f} s per step"
        if self.scenarios == ["tenants"]:
            classes = f"1 steady + {self.users - 1} flood users (FloodTenantUser, SteadyTenantUser; a key per tenant)"
            return f"{classes} (spawn {self.spawn_rate:g}/s) for {self.duration_s:.0f} s"
        classes = " + ".join(self.user_classes)
        pace = f", one job per user every {self.pace_s:.1f} s" if self.pace_s else ""
        return f"{classes}, {self.users} users (spawn {self.spawn_rate:g}/s){pace} for {self.duration_s:.0f} s"


def overload_users(env: dict[str, str], workers: int | None) -> int:
    """Three times what the service can hold: its queue limit plus one job per worker."""
    depth = int(env.get("ANIMEGAN_MAX_QUEUE_DEPTH") or DEFAULT_QUEUE_DEPTH)
    return 3 * (depth + (workers or os.cpu_count() or 1))


def default_users(scenario: Scenario, env: dict[str, str], workers: int | None) -> int:
    if scenario.name == "overload":
        return overload_users(env, workers)
    if scenario.name == "tenants":
        return clients.tenant_users(env)
    return scenario.users


def make_plan(args: argparse.Namespace) -> Plan:
    scenarios: list[Scenario] = args.scenario
    env = dict(os.environ)
    users = args.users or sum(default_users(s, env, args.workers) for s in scenarios)
    duration = args.duration or max(s.duration_s for s in scenarios)
    steps = step_s = None
    if [s.name for s in scenarios] == ["classic"] and not args.flat:
        steps = ramp(users)
        step_s = args.step_duration or duration / len(steps)
        duration = step_s * len(steps)
    return Plan(
        scenarios=[s.name for s in scenarios],
        user_classes=[name for s in scenarios for name in s.user_classes],
        users=users,
        spawn_rate=args.spawn_rate or float(users),
        duration_s=duration,
        steps=steps,
        step_s=step_s,
        stop_timeout_s=args.stop_timeout,
    )
