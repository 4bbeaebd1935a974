"""The sampler: Prometheus text parsed with the real client library, a real HTTP endpoint, real processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from loadtest.sampler import Sampler, classify, format_labels, parse_labels, parse_samples


def exposition() -> bytes:
    """What the service exports, made by prometheus_client itself (names from DESIGN.md)."""
    registry = CollectorRegistry()
    rss = Gauge("process_resident_memory_bytes", "RSS", ["component", "pid"], namespace="animegan", registry=registry)
    rss.labels("api", "4141").set(50e6)
    rss.labels("worker", "4242").set(300e6)
    Gauge("queue_depth", "queued", namespace="animegan", registry=registry).set(3)
    Counter("host_cpu_iowait_seconds", "iowait", namespace="animegan", registry=registry).inc(1.5)
    peak = Histogram("job_peak_rss_bytes", "peak", namespace="animegan", registry=registry, buckets=(1e8, 2e8, 4e8))
    peak.observe(1.5e8)
    Counter("other_thing", "not ours", registry=registry).inc()
    return generate_latest(registry)


@pytest.fixture
def metrics_url() -> Iterator[str]:
    body = exposition()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/metrics" else 404
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body if status == 200 else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_parse_samples_keeps_our_prefix_and_full_sample_names() -> None:
    samples = parse_samples(exposition().decode())
    names = {name for name, _, _ in samples}
    assert "animegan_host_cpu_iowait_seconds_total" in names
    assert "animegan_job_peak_rss_bytes_bucket" in names
    assert "animegan_job_peak_rss_bytes_count" in names
    assert not any(name.startswith("other_thing") for name in names)
    rss = {labels["component"]: value for name, labels, value in samples if name.endswith("resident_memory_bytes")}
    assert rss == {"api": 50e6, "worker": 300e6}


def test_labels_round_trip() -> None:
    labels = {"pid": "12", "component": "worker"}
    assert format_labels(labels) == "component=worker;pid=12"
    assert parse_labels(format_labels(labels)) == labels
    assert parse_labels("") == {}


def test_sampler_writes_metrics_processes_and_host_rows(metrics_url: str, tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler = Sampler(url=metrics_url, folder=tmp_path, processes=lambda: [psutil.Process(child.pid)], temp=None)
        sampler.watch(psutil.Process(), "runner")
        sampler.tick()
        sampler.tick()
        sampler.save_scrape("metrics-end.prom")
        sampler.stop()
    finally:
        child.kill()
        child.wait()
    with (tmp_path / "metrics.csv").open() as handle:
        metrics = list(csv.DictReader(handle))
    assert {row["name"] for row in metrics} >= {"animegan_queue_depth", "animegan_process_resident_memory_bytes"}
    assert not any(row["name"].endswith("_bucket") for row in metrics)
    assert sampler.scrapes == 3
    assert sampler.failed_scrapes == 0
    # The pid labels of the RSS metric name the components of those processes.
    assert sampler.components[4242] == "worker"
    with (tmp_path / "processes.csv").open() as handle:
        processes = list(csv.DictReader(handle))
    assert {row["pid"] for row in processes} == {str(child.pid), str(os.getpid())}
    assert all(int(row["rss_bytes"]) > 1_000_000 for row in processes)
    assert {row["component"] for row in processes if row["pid"] == str(os.getpid())} == {"runner"}
    with (tmp_path / "host.csv").open() as handle:
        host = list(csv.DictReader(handle))
    assert len(host) == 3
    assert float(host[-1]["total_s"]) >= float(host[0]["total_s"])
    assert "animegan_job_peak_rss_bytes_bucket" in (tmp_path / "metrics-end.prom").read_text()


def test_a_missing_endpoint_is_counted_not_raised(tmp_path: Path) -> None:
    sampler = Sampler(url="http://127.0.0.1:9", folder=tmp_path, processes=None, temp=None)
    sampler.tick()
    sampler.save_scrape("metrics-start.prom")
    sampler.stop()
    assert sampler.scrapes == 0
    assert sampler.failed_scrapes == 2
    assert (tmp_path / "metrics-start.prom").read_text().startswith("#")


def test_sampler_thread_samples_about_every_interval(metrics_url: str, tmp_path: Path) -> None:
    sampler = Sampler(url=metrics_url, folder=tmp_path, processes=None, temp=None, interval=0.1)
    sampler.start()
    threading.Event().wait(0.6)
    sampler.stop()
    assert not sampler.is_alive()
    assert sampler.scrapes >= 3


def _wait_for_exec(process: psutil.Process, marker: str, timeout_s: float = 10.0) -> None:
    """Right after Popen the child may not have exec'd yet: its command line is empty or its parent's."""
    deadline = time.monotonic() + timeout_s
    while marker not in process.cmdline():
        assert time.monotonic() < deadline, f"child never showed {marker!r} in its command line"
        time.sleep(0.01)


def test_classify_reads_the_command_line() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "celery", "worker"])
    try:
        process = psutil.Process(child.pid)
        _wait_for_exec(process, "celery")
        assert classify(process) == "worker"
    finally:
        child.kill()
        child.wait()


class LateCmdline:
    """A process whose command line is empty at first, as one read between fork and exec."""

    def __init__(self, pid: int, lines: list[list[str]]) -> None:
        self.pid = pid
        self.lines = lines

    def cmdline(self) -> list[str]:
        return self.lines.pop(0) if len(self.lines) > 1 else self.lines[0]


def test_an_empty_command_line_is_not_remembered_as_the_component(tmp_path: Path) -> None:
    sampler = Sampler(url="http://127.0.0.1:9", folder=tmp_path, processes=None, temp=None)
    process = LateCmdline(987654, [[], ["python", "-m", "celery", "worker"]])
    assert sampler._component(process) == "unknown"  # type: ignore[arg-type]
    assert 987654 not in sampler.components  # classified again at the next sample
    assert sampler._component(process) == "worker"  # type: ignore[arg-type]
    assert sampler.components[987654] == "worker"
    sampler.stop()
