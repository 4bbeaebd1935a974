"""The report from a run folder's raw files: the seed table, checks, five valid PNGs, summary.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from PIL import Image
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from loadtest import machine
from loadtest.report import fmt_bytes, main, write_report

T0 = 1_800_000_000.0


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def scrape(jobs: int) -> str:
    registry = CollectorRegistry()
    peak = Histogram("job_peak_rss_bytes", "p", namespace="animegan", registry=registry, buckets=(2e8, 4e8, 8e8))
    for _ in range(jobs):
        peak.observe(3e8)
    Counter("dedup_hits", "d", namespace="animegan", registry=registry)
    Gauge("queue_depth", "q", namespace="animegan", registry=registry).set(jobs % 3)
    return generate_latest(registry).decode()


def make_run(folder: Path, *, temp_files: list[str], server_error: bool = False) -> None:
    """A two-step classic run as the runner and the locustfile lay it out."""
    requests, jobs, metrics, processes, host = [], [], [], [], []
    for i in range(40):
        t, users = T0 + i, 1 if i < 20 else 2
        status = 500 if server_error and i == 30 else 202
        requests.append(
            {
                "t": t,
                "method": "POST",
                "name": "/stylize",
                "status": status,
                "response_ms": 12.0,
                "bytes": 300,
                "ok": int(status < 500),
                "retry_after": "1",
                "error": "",
            }
        )
        requests.append(
            {
                "t": t + 0.5,
                "method": "GET",
                "name": "/jobs/[id]",
                "status": 200,
                "response_ms": 3.0,
                "bytes": 500,
                "ok": 1,
                "retry_after": "1",
                "error": "",
            }
        )
        jobs.append(
            {
                "submitted_at": t,
                "finished_at": t + 1.2,
                "latency_s": 1.2 + users * 0.1,
                "server_latency_s": 0.3,
                "queue_s": 0.01,
                "inference_s": 0.2,
                "outcome": "succeeded",
                "detail": "",
                "scenario": "classic",
                "users": users,
                "width": 1080,
                "height": 1920,
                "upload_bytes": 300_000,
                "result_bytes": 90_000,
                "deduplicated": 0,
                "shed_503": 0,
                "job_id": f"j{i}",
            }
        )
        metrics.append({"t": t, "name": "animegan_queue_depth", "labels": "", "value": i % 3})
        for pid, component, rss in ((10, "api", 60e6), (11, "worker", 250e6 + i * 1e6)):
            processes.append(
                {
                    "t": t,
                    "pid": pid,
                    "ppid": 1,
                    "component": component,
                    "name": "python",
                    "rss_bytes": rss,
                    "cpu_s": i * 0.5,
                    "read_bytes": 0,
                    "write_bytes": i * 100,
                    "fds": 12,
                }
            )
        host.append({"t": t, "busy_s": i * 1.5, "iowait_s": i * 0.01, "total_s": i * 2.0, "load1": 1.0})
    for name, rows in (
        ("requests", requests),
        ("jobs", jobs),
        ("metrics", metrics),
        ("processes", processes),
        ("host", host),
    ):
        write_csv(folder / f"{name}.csv", rows)
    (folder / "metrics-start.prom").write_text(scrape(0))
    (folder / "metrics-end.prom").write_text(scrape(40))
    temp = {
        "observed": True,
        "stack_files": temp_files,
        "metrics_files": [],
        "unattributed": ["/tmp/x"],
        "roots": ["/tmp", "/dev/shm"],
        "truncated": False,
    }
    (folder / "tempfiles.json").write_text(json.dumps(temp))
    meta = {
        "scenario": "classic",
        "scenarios": ["classic"],
        "command": "animegan loadtest classic --users 2",
        "started": "2027-01-15T10:00:00+00:00",
        "load": "ClassicUser, users 1,2, 20 s per step",
        "users": 2,
        "steps": [1, 2],
        "step_s": 20.0,
        "latency_factor": 4.0,
        "photos": None,
        "target": "embedded stack",
        "load_started_at": T0,
        "load_finished_at": T0 + 40,
        "machine": machine.describe(),
        "settings": {"ANIMEGAN_MAX_SIDE": "256"},
    }
    (folder / "run.json").write_text(json.dumps(meta))  # fmt: skip


def test_report_has_the_seed_table_checks_and_valid_plots(tmp_path: Path) -> None:
    make_run(tmp_path, temp_files=[])
    summary = write_report(tmp_path)
    assert summary["passed"]
    table = {row["measure"]: row for row in summary["table"]}
    assert table["Average response time, job (submit → result)"]["value"] > 1.2
    assert table["Average response time, HTTP"]["value"] == 7.5
    assert table["Peak memory per inference"]["value"] == 3e8
    assert table["Maximum stable concurrency"]["value"] == 2
    assert table["Disk IO total (read / write)"]["value"] == 7800  # psutil: 39 x 100 bytes each, api and worker
    assert table["Temporary files created"]["value"] == 0
    report = (tmp_path / "report.md").read_text()
    assert "| measure | result | how it was measured |" in report
    for measure in table:
        assert f"| {measure} |" in report
    assert "all checks passed" in report
    assert "## Step ramp" in report
    assert str(machine.describe()["cpu_model"]) in report
    for name in ("latency.png", "throughput.png", "queue_depth.png", "rss.png", "disk_io.png"):
        assert f"]({name})" in report
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
            image.verify()
    assert json.loads((tmp_path / "summary.json").read_text())["passed"] is True


def test_a_5xx_or_a_temp_file_fails_the_checks(tmp_path: Path) -> None:
    make_run(tmp_path, temp_files=["/tmp/upload-spool"], server_error=True)
    summary = write_report(tmp_path)
    failed = {check["check"] for check in summary["checks"] if not check["ok"]}
    assert failed == {"no 5xx (other than 503 shedding)", "no failed request", "no temporary file created by the stack"}
    assert "some checks FAILED" in (tmp_path / "report.md").read_text()
    assert main([str(tmp_path)]) == 1


def test_absent_metrics_are_reported_as_absent(tmp_path: Path) -> None:
    make_run(tmp_path, temp_files=[])
    (tmp_path / "metrics-end.prom").write_text("# /metrics did not answer\n")
    (tmp_path / "metrics.csv").write_text("t,name,labels,value\n")
    summary = write_report(tmp_path)
    assert "animegan_queue_depth" in summary["metrics"]["absent"]
    memory = next(row for row in summary["table"] if row["measure"] == "Peak memory per inference")
    assert memory["text"].endswith("worker process peak RSS")  # psutil's number stands in
    assert "queue_depth: absent" not in (tmp_path / "report.md").read_text()  # said on the plot, not in the text


def test_fmt_bytes() -> None:
    assert fmt_bytes(None) == "absent"
    assert fmt_bytes(0) == "0 B"
    assert fmt_bytes(2048) == "2 kB"
    assert fmt_bytes(3.5 * 1024**2) == "3.5 MB"


def test_the_engines_the_workers_loaded_come_from_the_final_scrape() -> None:
    from loadtest.report import engines

    scrape = (
        "# HELP animegan_worker_engine_info 1 for the precision and runtime\n"
        'animegan_worker_engine_info{precision="bf16",runtime="openvino"} 1.0\n'
        'animegan_worker_engine_info{precision="fp32",runtime="onnxruntime"} 0.0\n'
    )
    assert engines(scrape) == ["bf16 on openvino"]
    assert engines(None) == []


def test_overload_counts_honoured_429s_as_shedding_and_every_429_needs_retry_after() -> None:
    from loadtest.analysis import http_summary, job_summary
    from loadtest.report import checks

    def post(status: int, retry_after: str, problem: str = "") -> dict[str, str]:
        return {"method": "POST", "name": "/stylize", "status": str(status), "response_ms": "5", "ok": "1",
                "retry_after": retry_after, "problem": problem}  # fmt: skip

    jobs = [{"outcome": "succeeded", "latency_s": "2", "width": "640", "height": "480", "shed_429": "1"}]
    rows = [post(429, "2", "client-quota"), post(202, "1")]
    summary = {"http": http_summary(rows), "jobs": job_summary(jobs, 60.0), "temp": {}}
    found = {c["check"]: c for c in checks(summary, {"scenarios": ["overload"]})}
    assert found["the burst was shed (503, or 429 from a per-client limit)"]["ok"]
    assert found["the burst was shed (503, or 429 from a per-client limit)"]["detail"] == "0 503s, 1 429s"
    assert found["every 429 carried Retry-After"]["ok"]
    summary["http"] = http_summary([post(429, "", "client-quota")])
    assert not {c["check"]: c for c in checks(summary, {"scenarios": ["overload"]})}["every 429 carried Retry-After"][
        "ok"
    ]
