"""Every ``animegan_*`` metric family, from its definition.

Families defined as prometheus_client objects are found as attributes of the modules that define
them (their name, type, help, labels, buckets and multiprocess mode); families made at scrape time
by a collector (what Redis and the host say) are collected from the collector itself, with sample
figures for Redis, since only their names, types, help and labels are shown.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.metrics import Histogram, MetricWrapperBase
from prometheus_client.registry import Collector

import telemetry.families
from animegan.docsite.markdown_table import code, prose, table
from api import metrics as api_metrics
from api.config import ApiSettings
from api.ops import scrape
from telemetry.host import HostCollector
from worker import metrics as worker_metrics

# Modules defining metric objects, and who writes them.
MODULES: dict[types.ModuleType, str] = {
    telemetry.families: "every process",
    api_metrics: "gateway",
    worker_metrics: "workers",
}
# The exposed sample name of a family, by type: counters get ``_total`` (histograms: ``_bucket`` ...).
_EXPOSED_SUFFIX = {"counter": "_total"}


@dataclass(frozen=True)
class Family:
    name: str  # as exposed: ``animegan_jobs_total``
    kind: str
    labels: tuple[str, ...]
    help: str
    written_by: str
    notes: str = ""


def _collectors() -> dict[Collector, str]:
    """The scrape-time collectors, with figures that make every family they can yield appear."""
    figures = scrape.StoreFigures(queue_depth=0, used_memory=0, max_memory=0, worker_processes=0)
    return {
        HostCollector(): "gateway and workers, at scrape time",
        scrape.StoreCollector(figures, ApiSettings()): "gateway, at scrape time (Redis and settings)",
    }


def _object_family(metric: MetricWrapperBase, written_by: str) -> Family:
    described = next(iter(metric.describe()))
    notes = []
    if isinstance(metric, Histogram):
        # prometheus_client keeps the buckets only as this attribute (with +Inf last).
        bounds = [f"{bound:.0f}" if bound.is_integer() else f"{bound:g}" for bound in metric._upper_bounds[:-1]]
        notes.append("buckets " + ", ".join(bounds))
    mode = getattr(metric, "_multiprocess_mode", None)
    if described.type == "gauge" and mode:
        notes.append(f"across processes: {mode}")
    return Family(
        name=described.name + _EXPOSED_SUFFIX.get(described.type, ""),
        kind=described.type,
        # The label names are kept only as this attribute (a family without children shows none).
        labels=tuple(metric._labelnames),
        help=described.documentation,
        written_by=written_by,
        notes="; ".join(notes),
    )


def families() -> list[Family]:
    """Every family the gateway and the workers export, sorted by name."""
    found: dict[str, Family] = {}
    for module, written_by in MODULES.items():
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                family = _object_family(value, written_by)
                found[family.name] = family
    for collector, written_by in _collectors().items():
        for metric in collector.collect():
            labels = tuple(dict.fromkeys(key for sample in metric.samples for key in sample.labels))
            name = metric.name + _EXPOSED_SUFFIX.get(metric.type, "")
            found[name] = Family(name, metric.type, labels, metric.documentation, written_by)
    return sorted(found.values(), key=lambda family: family.name)


def exposed_names() -> Iterator[str]:
    for family in families():
        yield family.name


def render() -> str:
    rows = [
        (
            f'<span id="{family.name}"></span>{code(family.name)}',
            family.kind,
            ", ".join(code(label) for label in family.labels) or "—",
            prose(family.help) + (f" ({family.notes})" if family.notes else ""),
            family.written_by,
        )
        for family in families()
    ]
    return table(["family", "type", "labels", "meaning", "written by"], rows)
