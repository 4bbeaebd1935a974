"""``animegan loadtest``: run a locust scenario against the service and write a report folder.

    animegan loadtest SCENARIO [--users N] [--duration D] [--url URL] [--workers N] [--photos DIR] [--out DIR]
    animegan loadtest soak [--rate JOBS_PER_MIN | --capacity-duration D] [--share F] [--duration 30m] ...

Without ``--url`` the runner starts the embedded stack (``animegan serve`` on a free port, private TMPDIR),
waits for ``/readyz``, and stops it afterwards. It runs locust headless as a subprocess, bounded by a hard
timeout, samples ``/metrics`` and the stack's processes about once a second, counts temporary files, and
writes ``<out>/<timestamp>-<scenario>/``: ``report.md``, PNG plots, ``summary.json`` and the raw CSVs.
``soak`` first measures the stack's capacity (``loadtest.capacity``: users back to back for
``--capacity-duration``) unless ``--rate`` is given, then paces its users at ``--share`` (80 %) of it for
``--duration`` (30 min) and adds the soak analysis (``loadtest.soak``) to the report.
The exit code is 0 when every check of the scenario passed, 1 when one failed, 2 when the run could not run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from loadtest import capacity, machine
from loadtest.sampler import Sampler
from loadtest.stack import EmbeddedStack, StackError
from loadtest.tempfiles import TempReport, TempWatch

logger = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# The service's default ANIMEGAN_MAX_QUEUE_DEPTH: what `overload` must exceed when the environment sets none.
DEFAULT_QUEUE_DEPTH = 50


@dataclass(frozen=True)
class Scenario:
    name: str
    user_class: str
    users: int
    duration_s: float
    description: str


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("classic", "ClassicUser", 10, 600, "1080x1920 portraits, submit and poll; step ramp 1,2,4,..N"),
        Scenario("mixed", "MixedSizesUser", 4, 300, "sizes from 32x32 to 4000x3000"),
        Scenario("overload", "OverloadUser", 0, 120, "all at once, 3x (queue limit + workers): 503s expected"),
        Scenario("dedup", "DuplicateUser", 4, 120, "the same photos again: answers from the result cache"),
        Scenario("badinput", "BadInputUser", 4, 120, "truncated, wrong type, oversize, bombs, bad fields: 4xx"),
        Scenario("soak", "SoakUser", 16, 1800, "mixed corpus paced at 80 % of measured capacity, long but bounded"),
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
    parser.add_argument("--users", type=int, metavar="N", help="users (classic: top of the step ramp)")
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
        classes = " + ".join(self.user_classes)
        pace = f", one job per user every {self.pace_s:.1f} s" if self.pace_s else ""
        return f"{classes}, {self.users} users (spawn {self.spawn_rate:g}/s){pace} for {self.duration_s:.0f} s"


def overload_users(env: dict[str, str], workers: int | None) -> int:
    """Three times what the service can hold: its queue limit plus one job per worker."""
    depth = int(env.get("ANIMEGAN_MAX_QUEUE_DEPTH") or DEFAULT_QUEUE_DEPTH)
    return 3 * (depth + (workers or os.cpu_count() or 1))


def make_plan(args: argparse.Namespace) -> Plan:
    scenarios: list[Scenario] = args.scenario
    defaults = [overload_users(dict(os.environ), args.workers) if s.name == "overload" else s.users for s in scenarios]
    users = args.users or sum(defaults)
    duration = args.duration or max(s.duration_s for s in scenarios)
    steps = step_s = None
    if [s.name for s in scenarios] == ["classic"] and not args.flat:
        steps = ramp(users)
        step_s = args.step_duration or duration / len(steps)
        duration = step_s * len(steps)
    return Plan(
        scenarios=[s.name for s in scenarios],
        user_classes=[s.user_class for s in scenarios],
        users=users,
        spawn_rate=args.spawn_rate or float(users),
        duration_s=duration,
        steps=steps,
        step_s=step_s,
        stop_timeout_s=args.stop_timeout,
    )


def locust_command(plan: Plan, url: str, folder: Path) -> list[str]:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url]
    command += ["--csv", str(folder / "locust"), "--only-summary", "--stop-timeout", f"{plan.stop_timeout_s:g}"]
    command += ["--exit-code-on-error", "0"]  # failures are judged by the report, not by locust's exit code
    if not plan.steps:  # the step shape sets users and time itself
        command += ["-u", str(plan.users), "-r", f"{plan.spawn_rate:g}", "-t", f"{plan.duration_s:.0f}s"]
    return command + plan.user_classes


def locust_env(plan: Plan, folder: Path, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH", "")]))
    env["ANIMEGAN_LOADTEST_OUT"] = str(folder)
    env["ANIMEGAN_LOADTEST_JOB_TIMEOUT_S"] = f"{args.job_timeout:g}"
    if args.photos:
        env["ANIMEGAN_LOADTEST_PHOTOS"] = str(args.photos.resolve())
    if plan.pace_s:
        env["ANIMEGAN_LOADTEST_PACE_S"] = f"{plan.pace_s:g}"
    if plan.steps:
        env["ANIMEGAN_LOADTEST_STEPS"] = ",".join(map(str, plan.steps))
        env["ANIMEGAN_LOADTEST_STEP_S"] = f"{plan.step_s:g}"
    return env


def run_locust(
    plan: Plan, url: str, folder: Path, args: argparse.Namespace, sampler: Sampler | None, stack: EmbeddedStack | None
) -> int:
    """Run locust to its end or to the hard timeout; its output goes to ``locust.log``."""
    command = locust_command(plan, url, folder)
    logger.info("load: %s", plan.describe())
    with (folder / "locust.log").open("wb") as log:
        env = locust_env(plan, folder, args)
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        if stack is not None:
            stack.exclude.add(process.pid)
        if sampler is not None:
            sampler.watch(psutil.Process(process.pid), "locust")
        try:
            return process.wait(timeout=plan.hard_timeout_s)
        except subprocess.TimeoutExpired:
            logger.error("locust passed its hard timeout of %.0f s; stopping it", plan.hard_timeout_s)
            return -1
        finally:  # timeout, Ctrl-C or SIGTERM: locust does not outlive the runner
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def report_folder(parent: Path, plan: Plan) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = parent / f"{stamp}-{'+'.join(plan.scenarios)}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = parent / f"{stamp}-{'+'.join(plan.scenarios)}-{suffix}"
    folder.mkdir(parents=True)
    return folder.resolve()


def service_settings(env: dict[str, str]) -> dict[str, str]:
    """The ANIMEGAN_* settings the stack sees (credentials in URLs masked), for the report."""
    settings = {key: value for key, value in env.items() if key.startswith("ANIMEGAN_") and "LOADTEST" not in key}
    return {key: re.sub(r"//[^@/]*@", "//***@", value) for key, value in settings.items()}


def run(args: argparse.Namespace) -> int:
    plan = make_plan(args)
    folder = report_folder(args.out, plan)
    logger.info("report folder: %s", folder)
    meta: dict[str, Any] = {
        "scenario": "+".join(plan.scenarios),
        "scenarios": plan.scenarios,
        "command": shlex.join(["animegan", "loadtest", *(args.argv or [])]),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "load": plan.describe(),
        "plan": asdict(plan),
        "users": plan.users,
        "steps": plan.steps,
        "step_s": plan.step_s,
        "latency_factor": args.latency_factor,
        "photos": str(args.photos.resolve()) if args.photos else None,
        "machine": machine.describe(),
        "settings": service_settings(dict(os.environ)),
    }
    stack: EmbeddedStack | None = None
    tmpdir: Path | None = None
    try:
        if args.url:
            url = args.url.rstrip("/")
            meta["target"] = f"external service at {url}"
        else:
            tmpdir = Path(tempfile.mkdtemp(prefix="animegan-loadtest-tmp-"))
            meta["stack_tmpdir"] = str(tmpdir)
            stack = EmbeddedStack(workers=args.workers, log=folder / "stack.log", tmpdir=tmpdir, env=dict(os.environ))
            stack.start(args.ready_timeout)
            url = stack.url
            meta["target"] = (
                f"embedded stack `{shlex.join(['animegan', *stack.command[stack.command.index('serve') :]])}` "
                f"at {url}, ready after {stack.ready_after_s:.1f} s"
            )
        meta["url"] = url
        temp = load(plan, url, folder, args, stack, tmpdir, meta)
    except StackError as error:
        logger.error("the embedded stack did not start: %s", error)
        meta["error"] = str(error)
        (folder / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        return 2
    finally:
        if stack is not None:
            stack.stop()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    from loadtest.report import write_report  # matplotlib: checked present in main()

    temp_data = {**asdict(temp), "observed": True} if temp else {"observed": False}
    (folder / "tempfiles.json").write_text(json.dumps(temp_data, indent=2) + "\n")
    (folder / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    summary = write_report(folder)
    print_summary(summary, folder)
    return 0 if summary["passed"] else 1


def load(
    plan: Plan,
    url: str,
    folder: Path,
    args: argparse.Namespace,
    stack: EmbeddedStack | None,
    tmpdir: Path | None,
    meta: dict[str, Any],
) -> TempReport | None:
    """Baseline, sampling, the locust run, the final scrape; returns the temp-file count (local stacks only)."""
    if plan.scenarios == ["soak"]:
        plan = pace_soak(plan, url, folder, args, stack, meta)
    temp = TempWatch(private=tmpdir, exclude=(folder,)) if stack else None
    if temp is not None and stack is not None:
        temp.baseline(stack.processes())
    processes = stack.processes if stack else None
    sampler = Sampler(url=url, folder=folder, processes=processes, temp=temp, interval=args.interval)
    sampler.watch(psutil.Process(), "runner")
    sampler.save_scrape("metrics-start.prom")
    sampler.tick()  # every process and counter sampled once before the load starts: the baseline of the deltas
    meta["load_started_at"] = time.time()
    sampler.start()
    try:
        meta["locust_exit_code"] = run_locust(plan, url, folder, args, sampler, stack)
    finally:
        meta["load_finished_at"] = time.time()
        sampler.save_scrape("metrics-end.prom")
        sampler.stop()
    meta["scrapes"] = {"ok": sampler.scrapes, "failed": sampler.failed_scrapes}
    return temp.finish(stack.processes()) if temp is not None and stack is not None else None


def pace_soak(
    plan: Plan, url: str, folder: Path, args: argparse.Namespace, stack: EmbeddedStack | None, meta: dict[str, Any]
) -> Plan:
    """The soak's plan with its pace: from ``--rate``, or from a capacity probe run first (its data in capacity/)."""
    if args.rate:
        probe: dict[str, Any] = {"given_rate": True, "rate_per_min": args.rate}
    else:
        probe_folder = folder / "capacity"
        probe_folder.mkdir()
        users = 2 * (args.workers or os.cpu_count() or 1)
        probe_plan = replace(plan, users=users, spawn_rate=float(users), duration_s=args.capacity_duration)
        logger.info("capacity probe: %s", probe_plan.describe())
        started = time.time()
        code = run_locust(probe_plan, url, probe_folder, args, None, stack)
        ended = started + args.capacity_duration
        from loadtest.analysis import read_csv

        measured = capacity.capacity_per_min(read_csv(probe_folder / "jobs.csv"), started, ended)
        if measured is None:
            raise StackError(f"the capacity probe finished no job in {args.capacity_duration:.0f} s (locust {code})")
        probe = {"given_rate": False, "capacity_per_min": measured, "users": users, "share": args.share}
        probe.update(seconds=args.capacity_duration, rate_per_min=measured * args.share, locust_exit_code=code)
    meta["capacity"] = probe
    pace = capacity.pace_s(probe["rate_per_min"], plan.users)
    # Users started together would submit together, a burst of `users` jobs every pace: started one every
    # pace / users seconds (unless --spawn-rate says otherwise), their jobs arrive evenly spread.
    spawn_rate = args.spawn_rate or plan.users / pace
    paced = replace(plan, pace_s=pace, spawn_rate=spawn_rate)
    meta["load"] = paced.describe()
    meta["plan"] = asdict(paced)
    logger.info("soak: %s", capacity.describe(probe))
    return paced


def print_summary(summary: dict[str, Any], folder: Path) -> None:
    out = [f"report: {folder / 'report.md'}"]
    out += [f"  {row['measure']}: {row['text']}" for row in summary["table"]]
    out += [f"  [{'ok' if c['ok'] else 'FAILED'}] {c['check']}: {c['detail']}" for c in summary["checks"]]
    sys.stdout.write("\n".join(out) + "\n")


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the stack and locust.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``animegan loadtest``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    missing = [name for name in ("locust", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:
        logger.error("%s not installed: pip install 'animegan[loadtest]'", " and ".join(missing))
        return 2
    if args.photos and not args.photos.is_dir():
        logger.error("--photos %s is not a folder", args.photos)
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args)
    except KeyboardInterrupt:
        logger.error("interrupted; the stack was stopped")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
