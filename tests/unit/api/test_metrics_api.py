"""The gateway's metric families: rejection reasons, and the figures read from Redis at scrape time."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

from api import metrics
from api.config import ApiSettings
from api.ops import scrape
from api.problems import PROBLEMS


def test_every_rejection_reason_comes_from_a_real_problem_slug() -> None:
    assert set(metrics.REJECTION_REASONS) <= set(PROBLEMS)
    # Problems about a job or a key refuse no upload: they are not counted as rejections.
    for slug in ("job-not-found", "job-not-ready", "idempotency-key-reused", "internal-error"):
        assert slug not in metrics.REJECTION_REASONS


def test_a_rejection_counts_under_its_reason_and_other_problems_are_ignored() -> None:
    def count(reason: str) -> float | None:
        return REGISTRY.get_sample_value("animegan_rejections_total", {"reason": reason})

    before = count("too_many_pixels")
    assert before is not None  # every reason exists from the start, at 0
    metrics.observe_rejection("too-many-pixels")
    metrics.observe_rejection("job-not-found")
    assert count("too_many_pixels") == before + 1


def registry_of(collector: scrape.StoreCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def test_store_figures_become_gauges() -> None:
    figures = scrape.StoreFigures(queue_depth=7, used_memory=1234, max_memory=0, worker_processes=2)
    registry = registry_of(scrape.StoreCollector(figures, ApiSettings(max_queue_depth=20)))
    assert registry.get_sample_value("animegan_queue_depth", {"queue": "animegan"}) == 7
    assert registry.get_sample_value("animegan_queue_depth_limit") == 20
    assert registry.get_sample_value("animegan_redis_used_memory_bytes") == 1234
    assert registry.get_sample_value("animegan_redis_max_memory_bytes") == 0
    assert registry.get_sample_value("animegan_worker_processes") == 2
    assert registry.get_sample_value("animegan_redis_up") == 1


def test_without_redis_only_the_limit_and_redis_up_zero_are_exported() -> None:
    registry = registry_of(scrape.StoreCollector(None, ApiSettings()))
    names = {family.name for family in registry.collect()}
    assert names == {"animegan_redis_up", "animegan_queue_depth_limit"}
    assert registry.get_sample_value("animegan_redis_up") == 0
