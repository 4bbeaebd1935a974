"""``animegan loadtest``: run a locust scenario against the service and write a report folder.

    animegan loadtest SCENARIO [--users N] [--duration D] [--url URL] [--workers N] [--photos DIR] [--out DIR]
    animegan loadtest soak [--rate JOBS_PER_MIN | --capacity-duration D] [--share F] [--duration 30m] ...

Without ``--url`` the runner starts the embedded stack (``animegan serve`` on a free port, private TMPDIR),
waits for ``/readyz``, and stops it afterwards. It runs locust headless as a subprocess, bounded by a hard
timeout, samples ``/metrics`` and the stack's processes about once a second, counts temporary files, and
writes ``<out>/<timestamp>-<scenario>/``: ``report.md``, PNG plots, ``summary.json`` and the raw CSVs.
``soak`` first measures the stack's capacity (``loadtest.capacity``: users back to back for
``--capacity-duration``) unless ``--rate`` is given, then paces its users at ``--share`` (80 %) of it for
``--duration`` (30 min) and adds the soak analysis (``loadtest.soak``) to the report. ``tenants`` runs two
clients with API keys of their own against the per-client quota and fair scheduling (``loadtest.clients``
makes the keys, ``loadtest.fairness`` judges the run); other scenarios get a stack whose quota does not
refuse their users, which all send from one address.
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
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from loadtest import capacity, clients, machine
from loadtest.plan import (  # re-exported: the runner's command line is defined there
    DEFAULT_QUEUE_DEPTH,
    SCENARIOS,
    Plan,
    Scenario,
    build_parser,
    default_users,
    make_plan,
    overload_users,
    parse_duration,
    ramp,
    scenario_list,
)
from loadtest.sampler import Sampler
from loadtest.stack import EmbeddedStack, StackError, readiness
from loadtest.tempfiles import TempReport, TempWatch

logger = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
__all__ = [
    "DEFAULT_QUEUE_DEPTH", "SCENARIOS", "Plan", "Scenario", "build_parser", "default_users", "main", "make_plan",
    "overload_users", "parse_duration", "ramp", "scenario_list",
]  # fmt: skip


def locust_command(plan: Plan, url: str, folder: Path) -> list[str]:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url]
    command += ["--csv", str(folder / "locust"), "--only-summary", "--stop-timeout", f"{plan.stop_timeout_s:g}"]
    command += ["--exit-code-on-error", "0"]  # failures are judged by the report, not by locust's exit code
    if not plan.steps:  # the step shape sets users and time itself
        command += ["-u", str(plan.users), "-r", f"{plan.spawn_rate:g}", "-t", f"{plan.duration_s:.0f}s"]
    return command + plan.user_classes


def locust_env(
    plan: Plan, folder: Path, args: argparse.Namespace, keys: clients.TenantKeys | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    if keys is not None:
        env.update(keys.locust_env())
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
    plan: Plan,
    url: str,
    folder: Path,
    args: argparse.Namespace,
    sampler: Sampler | None,
    stack: EmbeddedStack | None,
    keys: clients.TenantKeys | None = None,
) -> int:
    """Run locust to its end or to the hard timeout; its output goes to ``locust.log``."""
    command = locust_command(plan, url, folder)
    logger.info("load: %s", plan.describe())
    with (folder / "locust.log").open("wb") as log:
        env = locust_env(plan, folder, args, keys)
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
    peak_users = max(plan.users, 2 * (args.workers or os.cpu_count() or 1))  # soak's capacity probe may use more
    try:
        setup = clients.setup(plan.scenarios, peak_users, dict(os.environ), embedded=not args.url)
        quota = clients.quota({**os.environ, **setup.overrides})
    except ValueError as error:
        logger.error("%s", error)
        return 2
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
        "runner_settings": setup.notes,
        "quota": quota,
    }
    stack: EmbeddedStack | None = None
    tmpdir = keys_dir = None
    try:
        if args.url:
            url = args.url.rstrip("/")
            meta["target"] = f"external service at {url}"
        else:
            tmpdir = Path(tempfile.mkdtemp(prefix="animegan-loadtest-tmp-"))
            keys_dir = Path(tempfile.mkdtemp(prefix="animegan-loadtest-keys-")) if setup.keys else None
            meta["stack_tmpdir"] = str(tmpdir)
            env = setup.stack_env(dict(os.environ), keys_dir)
            meta["settings"] = service_settings(env)
            stack = EmbeddedStack(workers=args.workers, log=folder / "stack.log", tmpdir=tmpdir, env=env)
            stack.start(args.ready_timeout)
            url = stack.url
            meta["target"] = (
                f"embedded stack `{shlex.join(['animegan', *stack.command[stack.command.index('serve') :]])}` "
                f"at {url}, ready after {stack.ready_after_s:.1f} s"
            )
        meta["url"] = url
        temp = load(plan, url, folder, args, stack, tmpdir, meta, setup.keys)
    except StackError as error:
        logger.error("the embedded stack did not start: %s", error)
        meta["error"] = str(error)
        (folder / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        return 2
    finally:
        if stack is not None:
            stack.stop()
        for made in (tmpdir, keys_dir):
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
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
    keys: clients.TenantKeys | None = None,
) -> TempReport | None:
    """Baseline, sampling, the locust run, the final scrape; returns the temp-file count (local stacks only)."""
    if plan.scenarios == ["soak"]:
        plan = pace_soak(plan, url, folder, args, stack, meta)
    # The runner's own folders are never the stack's temp files: the report's, and the keys file's it wrote.
    own = (folder, *([Path(stack.env[clients.KEYS_FILE_VAR]).parent] if keys and stack else []))
    temp = TempWatch(private=tmpdir, exclude=own) if stack else None
    if temp is not None and stack is not None:
        temp.baseline(stack.processes())
    processes = stack.processes if stack else None
    key = (keys.observer if keys else None) or os.environ.get("ANIMEGAN_LOADTEST_KEY")
    sampler = Sampler(url=url, folder=folder, processes=processes, temp=temp, interval=args.interval, key=key)
    meta["workers_live"] = readiness(url).get("workers")  # worker processes with a heartbeat, per /readyz
    sampler.watch(psutil.Process(), "runner")
    sampler.save_scrape("metrics-start.prom")
    sampler.tick()  # every process and counter sampled once before the load starts: the baseline of the deltas
    meta["load_started_at"] = time.time()
    sampler.start()
    try:
        meta["locust_exit_code"] = run_locust(plan, url, folder, args, sampler, stack, keys)
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
