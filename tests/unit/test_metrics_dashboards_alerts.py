"""Dashboards and alert rules against the real promtool and against the metric names the code exports.

promtool (Debian's ``prometheus`` package, installed by ``scripts/setup.sh system``) checks the rule
files, runs their unit tests, and parses every dashboard expression; every ``animegan_*`` name a
dashboard or rule uses must be one the code exports. Whether the expressions return data from a
running stack is proven in tests/e2e/test_prometheus_stack.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

from api.config import ApiSettings
from api.ops import scrape
from telemetry.host import HostCollector
from worker import metrics as worker_metrics

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "animegan"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
RULE_FILES = sorted((CHART / "alerts").glob("*.yaml"))
RULE_TESTS = sorted((CHART / "alerts" / "tests").glob("*.yaml"))
# Grafana's interval variables, as the e2e test substitutes them too.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
METRIC_NAME = re.compile(r"\banimegan_[a-z0-9_]+\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: run `make system-deps` (scripts/setup.sh installs Debian's prometheus package)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def dashboard_expressions() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) for every target of every panel."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
    return found


def substitute(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def exported_names() -> set[str]:
    """Every sample name the gateway and the workers can expose (scrape-time collectors included)."""
    # The imports above put the gateway's and the workers' families in the default registry.
    assert worker_metrics.JOBS in REGISTRY._collector_to_names
    figures = scrape.StoreFigures(queue_depth=1, used_memory=1, max_memory=1, worker_processes=1)
    collectors = [
        REGISTRY,
        HostCollector(),
        scrape.StoreCollector(figures, ApiSettings()),
    ]
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for collector in collectors:
        # From the family and its type: a labelled family has no samples until a label set is used.
        for family in collector.collect():
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def test_there_are_dashboards_rules_and_rule_tests() -> None:
    assert DASHBOARDS
    assert RULE_FILES
    assert RULE_TESTS


def test_promtool_accepts_the_alert_rules() -> None:
    done = promtool("check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    alerts = {
        rule["alert"] for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"] for rule in g["rules"]
    }
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else silent).add(case["alertname"])
    assert alerts == firing, f"alerts without a firing test: {alerts - firing}"
    assert alerts == silent, f"alerts without a silent test: {alerts - silent}"


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    # promtool has no bare PromQL check: each expression becomes a recording rule it must parse.
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": substitute(e)} for i, (_, _, e) in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboards_and_alerts_use_only_exported_metric_names() -> None:
    exported = exported_names()
    texts = [e for _, _, e in dashboard_expressions()]
    texts += [
        rule["expr"] for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"] for rule in g["rules"]
    ]
    used = {name for text in texts for name in METRIC_NAME.findall(text)}
    assert used
    assert used <= exported, f"not exported by the code: {sorted(used - exported)}"


def test_dashboards_cover_the_operator_questions() -> None:
    expressions = " ".join(e for _, _, e in dashboard_expressions())
    for family in (
        "animegan_jobs_total",  # throughput and errors
        "animegan_job_duration_seconds_bucket",  # latency quantiles
        "animegan_inference_seconds_bucket",
        "animegan_queue_depth",
        "animegan_queue_wait_seconds_bucket",
        "animegan_jobs_running",
        "animegan_process_resident_memory_bytes",
        "animegan_job_peak_rss_bytes_bucket",
        "animegan_host_cpu_iowait_seconds_total",
        "animegan_process_disk_read_bytes_total",
        "animegan_process_disk_write_bytes_total",
        "animegan_rejections_total",
        "animegan_redis_used_memory_bytes",
        "animegan_dedup_hits_total",
        "animegan_upload_bytes_bucket",
    ):
        assert family in expressions, family


def test_dashboards_are_provisionable_grafana_json() -> None:
    uids = set()
    for path in DASHBOARDS:
        board: dict[str, Any] = json.loads(path.read_text())
        assert board["uid"] not in uids
        uids.add(board["uid"])
        assert board["title"]
        assert board["schemaVersion"] >= 36
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            # The datasource uid both the compose provisioning and kube-prometheus-stack define.
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
            assert panel["targets"], panel["title"]
            assert panel["description"], panel["title"]
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            for target in panel["targets"]:
                # Quantiles come from histograms; counters only through rate(): never raw counter values.
                for name in METRIC_NAME.findall(target["expr"]):
                    if name.endswith(("_total", "_bucket", "_sum", "_count")):
                        assert "rate(" in target["expr"], (panel["title"], target["expr"])
