"""A real Prometheus scrapes a real stack; every required series and every dashboard query must have data.

Two layouts, as deployed:

- production (compose, chart): the gateway process serves /metrics on its port, the Celery worker's
  main process serves its pool children's metrics on ANIMEGAN_METRICS_PORT; the scrape config is
  deploy/prometheus/prometheus.yml with static targets in place of DNS discovery;
- embedded (``animegan serve``): one /metrics on the API port carries the workers' series too.

Prometheus (Debian's binary, scrape and evaluation interval 1 s, config and data under tmp_path)
also loads the alert rules of charts/animegan/alerts: each must evaluate without error. The
queries and the values they returned are written to test-artifacts/metrics/ for the record.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from animegan.redis_server import free_port
from inference.precision import resolve_precision

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
CHART = ROOT / "charts" / "animegan"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ARTIFACTS = ROOT / "test-artifacts" / "metrics"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}

# Every family the service must export, with the label values that must be present.
REQUIRED: dict[str, dict[str, set[str]]] = {
    "animegan_process_resident_memory_bytes": {"component": {"api", "worker", "worker_main"}},
    "animegan_job_peak_rss_bytes_bucket": {},
    "animegan_host_cpu_iowait_seconds_total": {},
    "animegan_host_cpus": {},
    "animegan_queue_depth": {"queue": {"animegan"}},
    "animegan_queue_depth_limit": {},
    "animegan_jobs_running": {},
    "animegan_jobs_total": {"style": {"hayao"}, "outcome": {"succeeded", "failed", "timeout"}},
    "animegan_queue_wait_seconds_bucket": {},
    "animegan_inference_seconds_bucket": {"style": {"hayao"}},
    "animegan_job_duration_seconds_bucket": {"style": {"hayao"}},
    "animegan_upload_bytes_bucket": {},
    "animegan_rejections_total": {"reason": {"unsupported", "too_large", "queue_full"}},
    "animegan_dedup_hits_total": {},
    "animegan_jobs_submitted_total": {},
    "animegan_process_disk_read_bytes_total": {"component": {"api", "worker", "worker_main"}},
    "animegan_process_disk_write_bytes_total": {"component": {"api", "worker", "worker_main"}},
    "animegan_redis_used_memory_bytes": {},
    "animegan_redis_max_memory_bytes": {},
    "animegan_redis_up": {},
    "animegan_worker_processes": {},
    "animegan_worker_max_memory_per_child_bytes": {},
    "animegan_model_load_seconds": {},
    "animegan_worker_engine_info": {"precision": {str(resolve_precision("auto"))}},
    "animegan_http_requests_total": {"route": {"/stylize", "/jobs/{job_id}", "/metrics"}},
    "animegan_http_request_duration_seconds_bucket": {},
    "animegan_video_jobs_total": {"style": {"hayao"}, "outcome": {"succeeded"}},
    "animegan_video_segments_total": {"outcome": {"succeeded"}},
    "animegan_video_frames_total": {},
    "animegan_video_segment_frames_per_second_bucket": {},
}


class Prometheus:
    """Debian's prometheus binary on a free loopback port, config and data in ``directory``."""

    def __init__(self, directory: Path, targets: dict[str, list[str]]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(scrape_config(targets, self.port)))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: run `make system-deps` (Debian's prometheus package)"
        log = (self.directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.directory / "prometheus.log").read_text()
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError("prometheus did not become ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30).json()
        assert answer["status"] == "success", (expr, answer)
        assert answer["data"]["resultType"] == "vector", (expr, answer["data"]["resultType"])
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def rules(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/rules", timeout=30).json()
        assert answer["status"] == "success"
        return [rule for group in answer["data"]["groups"] for rule in group["rules"]]

    def wait_for(self, expr: str, check: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if check(result):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{expr}: {result}")


def scrape_config(targets: dict[str, list[str]], own_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with static targets, 1 s intervals and the repository's rule files."""
    config: dict[str, Any] = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(path) for path in sorted((CHART / "alerts").glob("*.yaml"))]
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name == "prometheus":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{own_port}"]}]
        elif name in targets:
            del job["dns_sd_configs"]
            job["static_configs"] = [{"targets": targets[name]}]
        else:
            continue
        jobs.append(job)
    assert {job["job_name"] for job in jobs} >= set(targets), "a target's job is not in the scrape config"
    config["scrape_configs"] = jobs
    return config


@contextmanager
def running_prometheus(directory: Path, targets: dict[str, list[str]]) -> Iterator[Prometheus]:
    prometheus = Prometheus(directory, targets)
    prometheus.start()
    try:
        yield prometheus
    finally:
        prometheus.stop()


def dashboard_queries() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted((CHART / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, f"unsubstituted variable in {expr}"
                found.append((path.name, panel["title"], expr))
    return found


def promtool_check(text: str) -> None:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: run `make system-deps` (Debian's prometheus package)"
    done = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result if math.isfinite(float(r["value"][1]))]


def run_load(base: str, photos: list[bytes], clip: bytes) -> None:
    """A few jobs, one duplicate, two refusals and a clip (the dashboard's video row); returns when every job
    has finished."""
    video = httpx.post(f"{base}/videos", files={"video": ("c.mp4", clip, "video/mp4")}, timeout=30)
    assert video.status_code == 202, video.text
    ids = [video.json()["id"]]
    for data in photos:
        answer = httpx.post(f"{base}/stylize", files={"image": ("p.jpg", data, "image/jpeg")}, timeout=30)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    duplicate = httpx.post(f"{base}/stylize", files={"image": ("p.jpg", photos[0], "image/jpeg")}, timeout=30)
    assert duplicate.headers.get("X-Deduplicated") == "true"
    bad = httpx.post(f"{base}/stylize", files={"image": ("x.gif", b"GIF89a" + bytes(64), "image/gif")}, timeout=30)
    assert bad.status_code == 415
    big = httpx.post(f"{base}/stylize", files={"image": ("big.jpg", bytes(100_000), "image/jpeg")}, timeout=30)
    assert big.status_code == 413
    deadline = time.monotonic() + 180
    for job_id in ids:
        while (status := httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()["status"]) not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline, f"job {job_id} still {status}"
            time.sleep(0.2)
        assert status == "succeeded"


def check_everything(prometheus: Prometheus, jobs: int, layout: str) -> None:
    # The scrapes after the load have landed: every job is counted.
    prometheus.wait_for(
        'sum(animegan_jobs_total{outcome="succeeded"})', lambda r: bool(r) and float(r[0]["value"][1]) == jobs
    )
    prometheus.wait_for(
        'count(animegan_process_resident_memory_bytes{component="worker"})', lambda r: bool(r), timeout_s=30
    )
    # The polls come last in run_load: with fast jobs the workers' counts land before the
    # gateway's scrape that holds them.
    prometheus.wait_for('sum(animegan_http_requests_total{route="/jobs/{job_id}"})', lambda r: bool(r), timeout_s=30)

    for name, labels in REQUIRED.items():
        result = prometheus.query(name)
        assert result, f"{layout}: no series {name}"
        for label, values in labels.items():
            present = {r["metric"].get(label) for r in result}
            assert values <= present, f"{layout}: {name} lacks {label}={sorted(values - present)}"

    record = []
    for dashboard, title, expr in dashboard_queries():
        result = prometheus.query(expr)
        numbers = finite_values(result)
        found = [{"labels": r["metric"], "value": r["value"][1]} for r in result]
        record.append({"dashboard": dashboard, "panel": title, "expr": expr, "series": found})
        assert numbers, f"{layout}: no data for {dashboard} / {title}: {expr} -> {result}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{layout}-dashboard-queries.json").write_text(json.dumps(record, indent=2) + "\n")

    # Every alert rule is evaluated by this Prometheus without error (a typo'd label or a
    # many-to-many match only shows at evaluation), and this healthy stack trips none of them
    # (iowait excepted: it depends on whatever else the host is doing).
    time.sleep(3)
    rules = prometheus.rules()
    assert rules
    for rule in rules:
        assert rule["health"] == "ok", (layout, rule["name"], rule.get("lastError"))
    tripped = {a["labels"]["alertname"] for rule in rules for a in rule.get("alerts", [])}
    assert tripped <= {"AnimeganHostIowaitHigh"}, f"{layout}: {tripped}"


def test_prometheus_scrapes_gateway_and_worker_and_every_dashboard_query_has_data(
    tmp_path: Path,
    redis_url: str,
    spawn_worker: Any,
    spawn_api: Any,
    photo: Callable[[], bytes],
    clip: Callable[..., bytes],
) -> None:
    worker_dir, api_dir = tmp_path / "worker-metrics", tmp_path / "api-metrics"
    worker_dir.mkdir()
    api_dir.mkdir()
    worker_port = free_port()
    worker = spawn_worker(
        redis_url,
        ANIMEGAN_WORKER_CONCURRENCY="2",
        ANIMEGAN_METRICS_PORT=str(worker_port),
        PROMETHEUS_MULTIPROC_DIR=str(worker_dir),
    )
    api = spawn_api(redis_url, PROMETHEUS_MULTIPROC_DIR=str(api_dir), ANIMEGAN_MAX_UPLOAD_BYTES="65536")
    deadline = time.monotonic() + 120
    while len(psutil.Process(worker.pid).children()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    targets = {"animegan-api": [f"127.0.0.1:{api.port}"], "animegan-worker": [f"127.0.0.1:{worker_port}"]}
    with running_prometheus(tmp_path / "prometheus", targets) as prometheus:
        prometheus.wait_for('up{job=~"animegan-.*"} == 1', lambda r: len(r) == 2)
        run_load(api.base, [photo() for _ in range(4)], clip())
        check_everything(prometheus, jobs=4, layout="production")


def test_prometheus_scrapes_the_single_endpoint_of_animegan_serve(
    tmp_path: Path, photo: Callable[[], bytes], clip: Callable[..., bytes], service_env: Callable[..., dict[str, str]]
) -> None:
    env = service_env(
        ANIMEGAN_MAX_SIDE="128",
        ANIMEGAN_MAX_UPLOAD_BYTES="65536",
        ANIMEGAN_WORKER_CONCURRENCY="2",
        ANIMEGAN_HEARTBEAT_INTERVAL_S="1",
        TMPDIR=str(tmp_path),
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "animegan.serve", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            with suppress(httpx.HTTPError):
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200 and ready.json()["workers"] == 2:
                    break
            assert time.monotonic() < deadline, "serve did not get ready"
            time.sleep(0.3)
        text = httpx.get(f"{base}/metrics", timeout=10).text
        promtool_check(text)
        # One endpoint, every process: the gateway, the worker's main process and both pool children.
        components = re.findall(r'^animegan_process_resident_memory_bytes\{component="(\w+)"', text, re.M)
        assert sorted(components) == ["api", "worker", "worker", "worker_main"], text
        with running_prometheus(tmp_path / "prometheus", {"animegan-api": [f"127.0.0.1:{port}"]}) as prometheus:
            prometheus.wait_for('up{job="animegan-api"} == 1', lambda r: len(r) == 1)
            run_load(base, [photo() for _ in range(4)], clip())
            check_everything(prometheus, jobs=4, layout="embedded")
        text = httpx.get(f"{base}/metrics", timeout=10).text
        promtool_check(text)
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(10)
