"""The tenants scenario judged from synthetic rows: the per-tenant split, the round-robin bound, its checks."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from loadtest import fairness
from loadtest.analysis import percentile
from loadtest.report import write_report

T0 = 1_800_000_000.0


def job(tenant: str, latency: float, **extra: Any) -> dict[str, str]:
    row = {"tenant": tenant, "scenario": "tenants", "outcome": "succeeded", "latency_s": latency, "waited_s": 0.0,
           "queue_s": 0.2, "service_s": 1.0, "inference_s": 0.8, "server_latency_s": 1.2, "shed_429": 0,
           "shed_503": 0, "submitted_at": T0, "finished_at": T0 + latency, "users": 13, "width": 640,
           "height": 480, "deduplicated": 0}  # fmt: skip
    return {key: str(value) for key, value in {**row, **extra}.items()}


def request(tenant: str, status: int, *, name: str = "/stylize", method: str = "POST", **extra: Any) -> dict[str, str]:
    hint = "2" if status in (202, 429, 503) else ""
    row = {"t": T0, "method": method, "name": name, "status": status, "response_ms": 20.0, "bytes": 100, "ok": 1,
           "retry_after": hint, "problem": "", "tenant": tenant, "error": ""}  # fmt: skip
    return {key: str(value) for key, value in {**row, **extra}.items()}


def flood_and_steady() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Flood: 20 jobs of 6-25 s (most waited behind 429s); steady: 10 jobs of 2.0-2.9 s, never refused."""
    jobs = [job("flood", 6.0 + i, waited_s=i * 0.5, shed_429=i % 3, queue_s=5.0) for i in range(20)]
    jobs += [job("steady", 2.0 + i / 10, queue_s=0.1 * i) for i in range(10)]
    requests = [request("flood", 429, problem="client-quota") for _ in range(19)]
    requests += [request("flood", 202) for _ in range(20)]
    requests += [request("steady", 202, response_ms=100.0) for _ in range(10)]
    requests += [request("steady", 200, method="GET", name="/jobs/[id]/result", response_ms=50.0) for _ in range(10)]
    return jobs, requests


def test_jobs_split_by_tenant_with_their_own_latency_queue_and_429s() -> None:
    jobs, _ = flood_and_steady()
    flood = fairness.tenant_jobs(jobs, "flood", 60.0)
    steady = fairness.tenant_jobs(jobs, "steady", 60.0)
    assert (flood["succeeded"], steady["succeeded"]) == (20, 10)
    assert flood["max_s"] == 25.0
    assert flood["p50_s"] == pytest.approx(15.5)
    assert steady["p95_s"] == pytest.approx(2.855)
    assert steady["max_s"] == pytest.approx(2.9)
    # From acceptance: the time spent refused before it is taken off (flood job i waited i x 0.5 s).
    assert flood["accepted_p95_s"] == pytest.approx(percentile([6.0 + i * 0.5 for i in range(20)], 95))
    assert flood["shed_429"] == sum(i % 3 for i in range(20))
    assert steady["shed_429"] == 0
    assert steady["queue_p95_s"] == pytest.approx(0.855)
    assert steady["service_p50_s"] == 1.0
    assert steady["per_minute"] == 10.0


def test_service_time_falls_back_to_inference_seconds_when_the_service_gives_no_start() -> None:
    jobs = [job("steady", 2.0, service_s="") for _ in range(3)]
    assert fairness.tenant_jobs(jobs, "steady", 60.0)["service_p50_s"] == 0.8


def test_requests_split_by_tenant_count_429s_by_problem_and_the_tenants_own_http_time() -> None:
    _, requests = flood_and_steady()
    requests.append(request("flood", 429, problem="rate-limited", retry_after=""))
    requests.append(request("", 500))  # not a tenant's: left out of both
    flood = fairness.tenant_requests(requests, "flood")
    steady = fairness.tenant_requests(requests, "steady")
    assert flood["status_429"] == 20
    assert flood["problems_429"] == {"client-quota": 19, "rate-limited": 1}
    assert flood["without_retry_after"] == 1
    assert flood["server_errors"] == steady["server_errors"] == 0
    assert steady["status_429"] == 0
    assert steady["http_s"] == pytest.approx(0.15)  # p95 upload 100 ms + p95 download 50 ms


def test_the_bound_follows_round_robin() -> None:
    limits = fairness.bound(1.5, 2, http_s=0.2)
    assert limits is not None
    assert limits["queue_bound_s"] == pytest.approx(4.5)  # the 2 running jobs and one flood job: (W + 1) x S
    assert limits["server_bound_s"] == pytest.approx(6.0)  # and its own: (W + 2) x S
    assert limits["poll_s"] == 2.0  # hints are whole seconds: ceil(2 x 1.5 / 2)
    assert limits["client_bound_s"] == pytest.approx(6.0 + 2.0 + 0.2)
    assert fairness.bound(0.3, 4)["poll_s"] == 1.0  # type: ignore[index]  # never under the 1 s minimum hint
    assert fairness.bound(None, 2) is None
    assert fairness.bound(1.0, None) is None


def judged(jobs: list[dict[str, str]], requests: list[dict[str, str]], **meta: Any) -> dict[str, bool]:
    result = fairness.summarize(jobs, requests, {"workers_live": 2, "quota": 10, **meta}, 60.0)
    return {name: ok for name, ok, _ in fairness.checks(result)}


def test_a_fair_run_passes_every_tenant_check() -> None:
    jobs, requests = flood_and_steady()
    result = fairness.summarize(jobs, requests, {"workers_live": 2, "quota": 10}, 60.0)
    assert result["bound"]["client_bound_s"] == pytest.approx(4.0 + 1.0 + 0.15)
    assert result["fifo_latency_s"] == pytest.approx(10 * 1.0 / 2 + 1.0)
    assert all(judged(jobs, requests).values()), fairness.checks(result)


def test_a_steady_tenant_stuck_behind_the_flood_fails_the_bound() -> None:
    jobs, requests = flood_and_steady()
    jobs = [row if row["tenant"] == "flood" else {**row, "latency_s": "9.0", "queue_s": "5.0"} for row in jobs]
    found = judged(jobs, requests)
    assert not found["the steady tenant's p95 latency within (W + 2) x S + poll + HTTP"]
    assert not found["the steady tenant's p95 queue wait within (W + 1) x S"]
    assert found["the flood tenant was held at its quota (429 client-quota)"]


def test_a_5xx_or_a_flood_never_refused_fail() -> None:
    jobs, requests = flood_and_steady()
    requests.append(request("steady", 502, method="GET", name="/jobs/[id]"))
    found = judged(jobs, requests)
    assert not found["no 5xx for either tenant"]
    never_refused = [row for row in flood_and_steady()[1] if row["status"] != "429"]
    assert not judged(jobs, never_refused)["the flood tenant was held at its quota (429 client-quota)"]


def test_without_a_worker_count_the_bound_is_not_judged_but_fails() -> None:
    jobs, requests = flood_and_steady()
    result = fairness.summarize(jobs, requests, {"workers_live": None, "quota": 10}, 60.0)
    assert result["bound"] is None
    first = fairness.checks(result)[0]
    assert not first[1]
    assert "cannot judge" in first[2]


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({key for row in rows for key in row}))
        writer.writeheader()
        writer.writerows(rows)


def test_the_report_gets_a_tenants_table_the_bound_and_the_runners_settings(tmp_path: Path) -> None:
    jobs, requests = flood_and_steady()
    write_csv(tmp_path / "jobs.csv", jobs)
    write_csv(tmp_path / "requests.csv", requests)
    keys_file = "ANIMEGAN_API_KEYS_FILE"
    meta = {"scenario": "tenants", "scenarios": ["tenants"], "users": 13, "workers_live": 2, "quota": 10,
            "load_started_at": T0, "load_finished_at": T0 + 60, "settings": {keys_file: "/tmp/k/api-keys"},
            "runner_settings": {keys_file: "set by the runner: a temporary file"}}  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps(meta))
    summary = write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "## Tenants" in report
    assert "| measure | flood | steady |" in report
    assert "| latency max | 25.00 s | 2.90 s |" in report
    assert "| 429s seen (problem types) | 19 (client-quota: 19) | 0 (none) |" in report
    assert "(W + 2) x S = 4.00 s" in report
    assert f"- Stack setting `{keys_file}=/tmp/k/api-keys`: set by the runner" in report
    assert summary["tenants"]["tenants"]["steady"]["succeeded"] == 10
    assert "![tenants](tenants.png)" in report
    with Image.open(tmp_path / "tenants.png") as image:
        assert image.format == "PNG"
        image.verify()
    table = {row["measure"]: row for row in summary["table"]}
    assert table["Maximum stable concurrency"]["text"].startswith("n/a")
    tenant_checks = {c["check"]: c["ok"] for c in summary["checks"]}
    assert tenant_checks["the steady tenant's p95 latency within (W + 2) x S + poll + HTTP"]
    assert tenant_checks["every 429 carried Retry-After"]
