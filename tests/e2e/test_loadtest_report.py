"""``animegan loadtest`` end to end: the real runner starts the real stack (real weights), drives it with
locust, samples it, and writes a report whose numbers must be sane.

Small images (max side 256) keep each run about a minute on two cores. Nothing here asserts a duration.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from PIL import Image

MEASURES = (
    "Average response time, job (submit → result)",
    "Average response time, HTTP",
    "Peak memory per inference",
    "Maximum stable concurrency",
    "Disk IO total (read / write)",
    "Temporary files created",
)
PLOTS = ("latency.png", "throughput.png", "queue_depth.png", "rss.png", "disk_io.png")


Run = tuple[subprocess.CompletedProcess[str], Path]


@pytest.fixture
def run_loadtest(service_env: Callable[..., dict[str, str]]) -> Callable[..., Run]:
    """``run_loadtest(out, *args, **settings)``: ``animegan loadtest`` with the service's settings."""

    def run(out: Path, *args: str, **settings: str) -> Run:
        return _run_loadtest(service_env(ANIMEGAN_MAX_SIDE="256", **settings), out, *args)

    return run


def _run_loadtest(env: dict[str, str], out: Path, *args: str) -> Run:
    command = [str(Path(sys.executable).parent / "animegan"), "loadtest", *args, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=out)
    folders = sorted(path for path in out.iterdir() if path.is_dir())
    assert len(folders) == 1, f"{done.stdout}\n{done.stderr}"
    # Every process of the stack got the runner's private TMPDIR: none may outlive the run.
    tmpdir = json.loads((folders[0] / "run.json").read_text())["stack_tmpdir"]
    assert not Path(tmpdir).exists()
    assert not [p.pid for p in psutil.process_iter() if stack_tmpdir(p) == tmpdir], "processes left behind"
    return done, folders[0]


def stack_tmpdir(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("TMPDIR")
    except psutil.Error:
        return None


def check_report(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    report = (folder / "report.md").read_text()
    assert "| measure | result | how it was measured |" in report
    for measure in MEASURES:
        assert f"| {measure} |" in report
    assert "## Machine" in report
    assert "- CPU: " in report
    for name in PLOTS:
        assert f"]({name})" in report
        assert (folder / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(folder / name) as image:
            image.verify()
    for raw in ("requests.csv", "jobs.csv", "metrics.csv", "processes.csv", "host.csv", "locust_stats.csv"):
        assert (folder / raw).stat().st_size > 0, raw
    summary = json.loads((folder / "summary.json").read_text())
    return summary, {row["measure"]: row for row in summary["table"]}


def test_classic_step_run_writes_a_sane_report(
    tmp_path: Path, samples_dir: Path, run_loadtest: Callable[..., Run]
) -> None:
    done, folder = run_loadtest(
        tmp_path, "classic", "--users", "2", "--duration", "30s", "--photos", str(samples_dir), "--stop-timeout", "60"
    )
    summary, table = check_report(folder)
    failed = [check for check in summary["checks"] if not check["ok"]]
    assert done.returncode == 0, f"{failed}\n{done.stdout}\n{done.stderr[-3000:]}"
    assert summary["passed"]
    assert summary["http"]["server_errors"] == 0
    assert summary["http"]["connection_errors"] == 0
    assert summary["jobs"]["succeeded"] >= 3
    assert summary["jobs"]["succeeded"] == summary["jobs"]["jobs"]
    assert summary["jobs"]["sizes"].keys() == {"1080x1920"}
    # The numbers of the table: positive latencies, memory of a model-holding process, a step ramp 1, 2.
    assert table["Average response time, job (submit → result)"]["value"] > 0
    assert (
        0
        < table["Average response time, HTTP"]["value"]
        < table["Average response time, job (submit → result)"]["value"] * 1000
    )
    assert 50 * 2**20 < table["Peak memory per inference"]["value"] < 8 * 2**30
    assert [row["users"] for row in summary["steps"]["rows"]] == [1, 2]
    assert all(row["succeeded"] > 0 for row in summary["steps"]["rows"])
    assert table["Maximum stable concurrency"]["value"] in (0, 1, 2)
    assert table["Disk IO total (read / write)"]["value"] >= 0
    assert table["Temporary files created"]["value"] == 0
    # psutil saw the stack: an API, a worker and Redis, each with memory.
    components = {proc["component"] for proc in summary["processes"]["processes"]}
    assert {"api", "worker", "redis", "locust"} <= components
    assert summary["processes"]["peak_rss_sum_bytes"] > 100 * 2**20
    assert "report:" in done.stdout


def test_overload_dedup_and_bad_input_are_judged_right(tmp_path: Path, run_loadtest: Callable[..., Run]) -> None:
    done, folder = run_loadtest(
        tmp_path,
        "overload,dedup,badinput",
        "--users", "12", "--duration", "25s", "--workers", "1", "--stop-timeout", "60",
        ANIMEGAN_MAX_QUEUE_DEPTH="2",
    )  # fmt: skip
    summary, table = check_report(folder)
    failed = [check for check in summary["checks"] if not check["ok"]]
    assert done.returncode == 0, f"{failed}\n{done.stdout}\n{done.stderr[-3000:]}"
    http = summary["http"]
    assert http["server_errors"] == 0
    assert http["shed_503"] > 0
    assert http["shed_503_without_retry_after"] == 0
    assert summary["jobs"]["deduplicated"] > 0
    bad = {route: r for route, r in http["routes"].items() if route.startswith("POST /stylize [")}
    assert bad
    for route, stats in bad.items():
        assert stats["failures"] == 0, route
        # 4xx, or 503 when the full queue shed the request before judging it (the client then sends it again)
        assert all(status.startswith("4") or status == "503" for status in stats["statuses"]), (route, stats)
    assert table["Maximum stable concurrency"]["text"].startswith("n/a")
    assert table["Temporary files created"]["value"] == 0
