"""The numbers of a run: percentiles, counters across processes, histograms from real expositions, step ramps."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from loadtest.analysis import (
    counter_delta,
    gauge_peak,
    histogram,
    histogram_delta,
    histogram_stats,
    http_summary,
    job_summary,
    percentile,
    process_summary,
    step_table,
)


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile(list(map(float, range(101))), 95) == pytest.approx(95.0)


def test_counter_delta_sums_label_sets_and_counts_new_processes_from_zero() -> None:
    series = {
        "pid=1": [(0.0, 100.0), (5.0, 150.0), (10.0, 180.0)],
        "pid=2": [(6.0, 40.0), (9.0, 70.0)],  # born during the run
        "pid=3": [(11.0, 999.0)],  # after the window
    }
    assert counter_delta(series, 1.0, 10.0) == pytest.approx(80.0 + 70.0)
    assert counter_delta(None, 0, 1) is None


def test_gauge_peak_sums_per_sample_time() -> None:
    series = {"a": [(1.0, 2.0), (2.0, 5.0)], "b": [(1.0, 4.0), (2.0, 0.0)]}
    assert gauge_peak(series, 0.0, 3.0) == 6.0
    assert gauge_peak(series, 1.5, 3.0) == 5.0
    assert gauge_peak({}, 0, 1) is None


def exposition(observations: list[float]) -> str:
    registry = CollectorRegistry()
    peak = Histogram("job_peak_rss_bytes", "p", namespace="animegan", registry=registry, buckets=(1e8, 2e8, 4e8))
    for value in observations:
        peak.observe(value)
    return generate_latest(registry).decode()


def test_histogram_delta_keeps_only_the_runs_observations() -> None:
    before = histogram(exposition([5e7]), "animegan_job_peak_rss_bytes")
    after = histogram(exposition([5e7, 1.5e8, 3e8]), "animegan_job_peak_rss_bytes")
    stats = histogram_stats(histogram_delta(before, after))
    assert stats is not None
    assert stats["count"] == 2
    assert stats["mean"] == pytest.approx(2.25e8)
    assert stats["max_at_most"] == 4e8
    assert histogram("", "animegan_job_peak_rss_bytes") is None
    assert histogram_stats(histogram_delta(after, after)) is None


def test_histogram_past_the_last_bucket_is_unbounded() -> None:
    stats = histogram_stats(histogram(exposition([9e8]), "animegan_job_peak_rss_bytes"))
    assert stats is not None
    assert math.isinf(stats["max_at_most"])


def request(method: str, name: str, status: int, ms: float, ok: bool = True, retry_after: str = "") -> dict[str, str]:
    return {
        "t": "1",
        "method": method,
        "name": name,
        "status": str(status),
        "response_ms": str(ms),
        "bytes": "10",
        "ok": "1" if ok else "0",
        "retry_after": retry_after,
        "error": "",
    }


def test_http_summary_separates_shedding_from_server_errors() -> None:
    rows = [
        request("POST", "/stylize", 202, 10),
        request("POST", "/stylize", 503, 5, retry_after="2"),
        request("POST", "/stylize", 503, 5),
        request("POST", "/stylize", 503, 5, ok=False),  # broker unavailable: an error, not shedding
        request("GET", "/jobs/[id]", 500, 30, ok=False),
        request("GET", "/jobs/[id]", 0, 30, ok=False),
        request("JOB", "job 32x32", 0, 9000),
    ]
    summary = http_summary(rows)
    assert summary["requests"] == 6
    assert summary["server_errors"] == 2
    assert summary["shed_503"] == 2
    assert summary["shed_503_without_retry_after"] == 1
    assert summary["connection_errors"] == 1
    assert summary["failures"] == 3
    assert summary["routes"]["POST /stylize"]["statuses"] == {"202": 1, "503": 3}
    assert summary["mean_ms"] == pytest.approx(85 / 6)


def test_http_summary_counts_honoured_429s_like_shedding_with_their_problem_types() -> None:
    rows = [
        {**request("POST", "/stylize", 429, 5, retry_after="3"), "problem": "client-quota"},
        {**request("POST", "/stylize", 429, 5, retry_after="1"), "problem": "client-quota"},
        {**request("GET", "/jobs/[id]", 429, 5), "problem": "rate-limited"},  # without Retry-After
        request("POST", "/stylize", 202, 10),
    ]
    summary = http_summary(rows)
    assert summary["refused_429"] == 3
    assert summary["refused_429_without_retry_after"] == 1
    assert summary["problems_429"] == {"client-quota": 2, "rate-limited": 1}
    assert summary["server_errors"] == 0
    assert summary["failures"] == 0


def job(
    users: int, latency: float, outcome: str = "succeeded", shed: int = 0, dedup: int = 0, refused: int = 0
) -> dict[str, str]:
    return {
        "users": str(users),
        "latency_s": str(latency),
        "outcome": outcome,
        "shed_503": str(shed),
        "shed_429": str(refused),
        "deduplicated": str(dedup),
        "server_latency_s": "",
        "width": "32",
        "height": "32",
    }


def test_job_summary_counts_outcomes_cache_hits_and_sheds() -> None:
    jobs = [job(1, 1.0), job(1, 3.0, dedup=1), job(1, 2.0, shed=2), job(1, 50.0, outcome="timeout")]
    summary = job_summary(jobs, 60.0)
    assert summary["succeeded"] == 3
    assert summary["outcomes"] == {"succeeded": 3, "timeout": 1}
    assert summary["mean_s"] == pytest.approx(2.0)
    assert summary["deduplicated"] == 1
    assert summary["shed_503"] == 2
    assert summary["per_minute"] == pytest.approx(3.0)


def test_step_table_finds_the_last_stable_step() -> None:
    jobs = [job(1, 1.0)] * 4 + [job(2, 1.2)] * 6 + [job(4, 3.5)] * 6 + [job(8, 9.0)] * 4 + [job(8, 1.0, "failed")]
    table = step_table(jobs, [1, 2, 4, 8], 30.0, factor=4.0)
    assert [row["stable"] for row in table["rows"]] == [True, True, True, False]
    assert table["max_stable"] == 4
    assert table["rows"][3]["why_not"] == "failures"
    assert table["rows"][1]["per_minute"] == pytest.approx(12.0)


def test_step_table_unbounded_latency_ends_stability_even_without_failures() -> None:
    jobs = [job(1, 1.0)] * 3 + [job(2, 5.0)] * 3 + [job(4, 1.0)] * 3
    table = step_table(jobs, [1, 2, 4], 30.0, factor=4.0)
    assert table["max_stable"] == 1  # the later, faster step does not count: stability broke at 2
    assert table["rows"][1]["why_not"] == "p95 over 4 x step-1 median"
    assert not table["all_stable"]


def test_a_step_whose_submissions_met_429_is_not_stable() -> None:
    jobs = [job(1, 1.0)] * 3 + [job(2, 1.1)] * 2 + [job(2, 1.1, refused=1)]
    summary = job_summary(jobs, 60.0)
    assert summary["shed_429"] == 1
    table = step_table(jobs, [1, 2], 30.0, factor=4.0)
    assert [row["stable"] for row in table["rows"]] == [True, False]
    assert table["rows"][1]["shed_503"] == 1  # the ramp's "503/429s" column
    assert table["rows"][1]["why_not"] == "shed"


def test_step_table_with_no_finished_job() -> None:
    table = step_table([job(1, 100.0, "timeout")], [1], 30.0, factor=4.0)
    assert table["max_stable"] == 0
    assert table["rows"][0]["why_not"] == "no job finished"


def test_process_summary_separates_the_stack_from_the_observers() -> None:
    def row(t: float, pid: int, component: str, rss: float, read: float, write: float) -> dict[str, str]:
        fields = {"t": t, "pid": pid, "ppid": 1, "component": component, "name": "python", "rss_bytes": rss}
        return {
            key: str(value) for key, value in {**fields, "cpu_s": t, "read_bytes": read, "write_bytes": write}.items()
        }

    rows = [
        row(0, 10, "api", 50e6, 0, 100),
        row(0, 11, "worker", 300e6, 0, 0),
        row(0, 99, "locust", 90e6, 0, 0),
        row(5, 10, "api", 60e6, 0, 150),
        row(5, 11, "worker", 700e6, 4096, 0),
        row(5, 12, "worker", 400e6, 0, 8192),  # born during the run
        row(5, 99, "locust", 95e6, 0, 5000),
    ]
    summary = process_summary(rows, 0.0, 10.0)
    assert summary["peak_rss_sum_bytes"] == pytest.approx(60e6 + 700e6 + 400e6)
    assert summary["worker_peak_rss_bytes"] == 700e6
    assert summary["write_bytes"] == 50 + 8192
    assert summary["read_bytes"] == 4096
    assert summary["observer_cpu_s"] == pytest.approx(5.0)
