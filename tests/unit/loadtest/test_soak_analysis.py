"""The soak's analysis on synthetic series: growth over the last two thirds, floors, plateaus, pacing."""

from __future__ import annotations

import math
import random

import pytest

from loadtest.capacity import capacity_per_min, pace_s
from loadtest.soak import (
    binned,
    checks,
    fit_line,
    floors,
    growth,
    latency_over_time,
    plateau,
    rss_series,
    tail_growth,
    worker_children,
)

MB = 1024 * 1024
MINUTE = 60.0


def sawtooth(
    start: float, end: float, floor: float, swing: float, creep_per_s: float = 0.0
) -> list[tuple[float, float]]:
    """A busy worker child: a job every 10 s takes RSS up by ``swing`` for 6 s, over a floor that may creep."""
    return [
        (t, floor + creep_per_s * (t - start) + (swing if t % 10 < 6 else 0.0)) for t in range(int(start), int(end))
    ]


def test_fit_line_recovers_a_straight_line_and_needs_two_times() -> None:
    slope, intercept = fit_line([(t, 3.0 * t + 7.0) for t in range(10)]) or (0, 0)
    assert slope == pytest.approx(3.0)
    assert intercept == pytest.approx(7.0)
    assert fit_line([(1.0, 5.0), (1.0, 6.0)]) is None


def test_growth_is_relative_to_the_line_at_the_window_start() -> None:
    points = [(float(t), 100.0 + t) for t in range(0, 101)]  # 100 -> 200
    assert growth(points, 0, 100) == pytest.approx(1.0)
    assert growth(points, 50, 100) == pytest.approx(50 / 150)
    assert growth([], 0, 10) is None


def test_tail_growth_ignores_the_warm_up_in_the_first_third() -> None:
    # Steep warm-up for 10 min, then flat for 20: the tail sees no growth.
    points = [(t, 150.0 * MB * min(1.0, 0.5 + t / 1200)) for t in range(0, 1800, 5)]
    assert growth(points, 0, 1800) > 0.2
    assert tail_growth(points, 0, 1800) == pytest.approx(0.0, abs=1e-9)
    creeping = [(t, 150.0 * MB + 3 * MB * (t - 600) / 1200) for t in range(600, 1801, 5)]  # +3 MB over 20 min: 2 %
    assert tail_growth(creeping, 0, 1800) == pytest.approx(0.02, rel=1e-3)


def test_floor_growth_sees_through_the_saw_tooth_of_jobs() -> None:
    flat = sawtooth(0, 1800, 250 * MB, 165 * MB)
    assert tail_growth(floors(flat), 0, 1800) == pytest.approx(0.0, abs=1e-9)
    leak = sawtooth(0, 1800, 250 * MB, 165 * MB, creep_per_s=10 * MB / 1800)  # 10 MB over the run
    grown = tail_growth(floors(leak), 0, 1800)
    assert grown is not None
    assert 0.02 < grown < 0.04
    # A single big job near the end moves a fit through every sample, not the floor's.
    spiky = flat[:-30] + [(t, 415.0 * MB) for t, _ in flat[-30:]]
    assert (tail_growth(spiky, 0, 1800) or 0) > (tail_growth(floors(spiky), 0, 1800) or 0) + 0.005


def test_binned_takes_minimum_or_mean_per_bin() -> None:
    points = [(0.0, 5.0), (10.0, 1.0), (59.0, 3.0), (61.0, 8.0), (100.0, 4.0)]
    assert binned(points, 60) == [(30.0, 1.0), (90.0, 4.0)]
    assert binned(points, 60, "mean") == [(30.0, 3.0), (90.0, 6.0)]


def redis_filling(ttl_s: float, level: float, end: float, noise: float = 0.02) -> list[tuple[float, float]]:
    """Redis filling for one result TTL (results written, none expired yet), then flat with noise."""
    rng = random.Random(7)
    base = 5 * MB
    return [
        (t, base + (level - base) * min(1.0, t / ttl_s) * (1 + rng.uniform(-noise, noise)))
        for t in range(0, int(end), 2)
    ]


def test_plateau_found_after_one_ttl_and_flat() -> None:
    points = redis_filling(300, 150 * MB, 1800)
    found = plateau(points, 0, 1800)
    assert found["level"] == pytest.approx(150 * MB, rel=0.03)
    assert 200 <= found["reached_at"] <= 320
    assert abs(found["drift"]) < 0.01
    assert found["flat"] is True


def test_still_climbing_is_not_a_plateau() -> None:
    climbing = [(float(t), 100 * MB + 0.1 * MB * t) for t in range(0, 1800, 2)]  # the 3600 s TTL case
    found = plateau(climbing, 0, 1800)
    assert found["flat"] is False
    # Reached its "level" only in the last third: not held long enough either.
    assert found["reached_at"] is None or found["reached_at"] > 1200


def test_plateau_reached_late_is_not_flat_and_an_empty_series_is_not_either() -> None:
    late = redis_filling(1500, 150 * MB, 1800)
    assert plateau(late, 0, 1800)["flat"] is False
    assert plateau([], 0, 1800) == {"level": None, "reached_at": None, "drift": None, "flat": False, "tolerance": 0.1}


def test_worker_children_are_workers_whose_parent_is_a_worker() -> None:
    rows = [
        {"t": "1", "pid": "10", "ppid": "1", "component": "serve", "rss_bytes": "5"},
        {"t": "1", "pid": "11", "ppid": "10", "component": "worker_main", "rss_bytes": "80"},
        {"t": "1", "pid": "12", "ppid": "11", "component": "worker", "rss_bytes": "250"},
        {"t": "2", "pid": "12", "ppid": "11", "component": "worker", "rss_bytes": "260"},
        {"t": "1", "pid": "13", "ppid": "10", "component": "api", "rss_bytes": "120"},
        {"t": "1", "pid": "14", "ppid": "1", "component": "locust", "rss_bytes": "90"},
    ]
    series = rss_series(rows)
    assert sorted(series) == [10, 11, 12, 13]
    assert series[12]["points"] == [(1.0, 250.0), (2.0, 260.0)]
    assert list(worker_children(series)) == [12]


def test_latency_over_time_bins_by_finish_time() -> None:
    jobs = [{"outcome": "succeeded", "finished_at": str(1000 + t), "latency_s": str(t % 10 + 1)} for t in range(0, 240)]
    jobs.append({"outcome": "failed", "finished_at": "1010", "latency_s": "999"})
    bins = latency_over_time(jobs, 1000, bin_s=120)
    assert [row["jobs"] for row in bins] == [120, 120]
    assert bins[0]["p50_s"] == pytest.approx(5.5)
    assert bins[0]["p99_s"] <= 10


def test_checks_pass_and_fail_on_the_goals() -> None:
    good = {"children": 2, "max_child_growth": 0.004, "redis": {"flat": True, "level": 100 * MB,
            "reached_after_s": 310.0, "drift": 0.01}}  # fmt: skip
    assert [ok for _, ok, _ in checks(good)] == [True, True]
    bad = {"children": 2, "max_child_growth": 0.03, "redis": {"flat": False, "level": None,
           "reached_after_s": None, "drift": None}}  # fmt: skip
    assert [ok for _, ok, _ in checks(bad)] == [False, False]
    assert checks({**good, "children": 0, "max_child_growth": None})[0][1] is False


def test_capacity_counts_succeeded_jobs_after_the_warm_up() -> None:
    jobs = [{"outcome": "succeeded", "finished_at": str(t)} for t in range(0, 180, 2)]  # one every 2 s
    jobs += [{"outcome": "failed", "finished_at": "150"}]
    assert capacity_per_min(jobs, 0, 180) == pytest.approx(30.0, rel=0.03)
    assert capacity_per_min([], 0, 180) is None
    assert pace_s(24.0, 16) == pytest.approx(40.0)
    with pytest.raises(ValueError, match="positive"):
        pace_s(0, 16)
    assert math.isclose(16 * 60 / pace_s(24.0, 16), 24.0)
