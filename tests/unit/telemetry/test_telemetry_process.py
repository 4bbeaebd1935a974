"""telemetry against the real kernel: RSS, per-job peak RSS, disk IO, iowait, dead-process bookkeeping.

Each figure is checked against an independent source (psutil, the bytes a child process really
allocated, wrote or read) in a fresh interpreter, so nothing else in the test process disturbs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from telemetry import exposition, host, process

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(120)
MiB = 1024 * 1024


def run_python(code: str, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_rss_matches_psutil_for_this_process_and_another() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        for pid in (os.getpid(), child.pid):
            ours = process.rss_bytes(pid)
            theirs = psutil.Process(pid).memory_info().rss
            assert abs(ours - theirs) < 4 * MiB, (pid, ours, theirs)
    finally:
        child.kill()
        child.wait()


PEAK_SCRIPT = """
import json, time
import numpy as np
from telemetry.peak_rss import PeakRss
from telemetry.process import peak_rss_bytes, rss_bytes

MiB = 1024 * 1024
big = np.ones(400 * MiB, dtype=np.uint8)  # touched: 400 MiB resident
del big
baseline = rss_bytes()
meter = PeakRss(use_clear_refs={use_clear_refs})
meter.start()
small = np.ones(64 * MiB, dtype=np.uint8)
time.sleep(0.2)
del small
small_peak = meter.stop()
meter.start()
large = np.ones(256 * MiB, dtype=np.uint8)
time.sleep(0.2)
del large
large_peak = meter.stop()
print(json.dumps({{"method": meter.method, "baseline": baseline, "small": small_peak, "large": large_peak,
                  "lifetime_peak": peak_rss_bytes()}}))
"""


def test_peak_rss_is_reset_per_job_through_clear_refs() -> None:
    found = run_python(PEAK_SCRIPT.format(use_clear_refs=True))
    assert found["method"] == "clear_refs"
    baseline, small, large = int(found["baseline"]), int(found["small"]), int(found["large"])
    # The 400 MiB allocated before the job does not leak into the job's peak...
    assert baseline + 60 * MiB <= small < baseline + 120 * MiB, found
    # ...and the next job's peak is its own.
    assert baseline + 250 * MiB <= large < baseline + 320 * MiB, found


def test_peak_rss_falls_back_to_sampling_when_clear_refs_is_not_used() -> None:
    found = run_python(PEAK_SCRIPT.format(use_clear_refs=False))
    assert found["method"] == "sampling"
    baseline, small, large = int(found["baseline"]), int(found["small"]), int(found["large"])
    assert baseline + 60 * MiB <= small < baseline + 120 * MiB, found
    assert baseline + 250 * MiB <= large < baseline + 320 * MiB, found
    # Without the reset the kernel's own peak still remembers the 400 MiB from before the jobs.
    assert int(found["lifetime_peak"]) >= 400 * MiB


def test_disk_io_counts_bytes_that_reach_and_come_from_storage(tmp_path: Path) -> None:
    found = run_python(
        f"""
        import json, os
        from telemetry.process import io_bytes

        path = {str(tmp_path / "blob")!r}
        before = io_bytes()
        with open(path, "wb") as out:
            out.write(os.urandom(8 * 1024 * 1024))
            out.flush()
            os.fsync(out.fileno())
        after_write = io_bytes()
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # drop it from the page cache: reads hit the disk
        while os.read(fd, 1 << 20):
            pass
        os.close(fd)
        after_read = io_bytes()
        print(json.dumps({{"before": before, "after_write": after_write, "after_read": after_read}}))
        """
    )
    before, after_write, after_read = (list(found[k]) for k in ("before", "after_write", "after_read"))
    assert after_write[1] - before[1] >= 8 * MiB
    assert after_read[0] - after_write[0] >= 8 * MiB


def test_iowait_and_cpu_count_match_proc_stat() -> None:
    iowait_s, cpus = host.host_cpu_times()
    stat = Path("/proc/stat").read_text().splitlines()
    # cpu  user nice system idle iowait irq softirq steal guest guest_nice (in clock ticks)
    proc_iowait = int(next(line for line in stat if line.startswith("cpu ")).split()[5]) / os.sysconf("SC_CLK_TCK")
    assert iowait_s >= 0
    assert abs(iowait_s - proc_iowait) < 1.0
    assert cpus == sum(1 for line in stat if line.startswith("cpu") and line[3].isdigit())


def test_a_zombie_or_reaped_process_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert psutil.pid_exists(child.pid)  # still in the process table...
    assert not process.process_alive(child.pid)  # ...but dead
    child.wait()
    assert not process.process_alive(child.pid)
    assert process.process_alive(os.getpid())


FORK_SCRIPT = """
import json, os, signal, sys, time
from prometheus_client.multiprocess import MultiProcessCollector
from telemetry.exposition import scrape_registry
from telemetry.families import DISK_WRITE
from telemetry.process_stats import ProcessStats

path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
ProcessStats("worker_main").sample()
DISK_WRITE.labels("worker_main").inc(100)
read_end, write_end = os.pipe()
child = os.fork()
if child == 0:
    # The child's first write re-creates every inherited value in its own file: the parent's RSS
    # entry appears there as 0 and must not show as a series.
    ProcessStats("worker").sample()
    DISK_WRITE.labels("worker").inc(5)
    os.write(write_end, b"x")
    time.sleep(60)
    os._exit(0)
os.read(read_end, 1)

def rss_series():
    registry = scrape_registry()
    found = []
    for family in registry.collect():
        if family.name == "animegan_process_resident_memory_bytes":
            found += [(s.labels["component"], int(s.labels["pid"]), s.value) for s in family.samples]
    writes = registry.get_sample_value("animegan_process_disk_write_bytes_total", {"component": "worker_main"})
    return sorted(found), writes

with_child = rss_series()
raw = MultiProcessCollector(None, path=path).collect()
rss_raw = [f for f in raw if f.name == "animegan_process_resident_memory_bytes"]
raw_zeros = [s.labels for f in rss_raw for s in f.samples if s.value == 0]
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
after_kill = rss_series()
print(json.dumps({"parent": os.getpid(), "child": child, "with_child": with_child, "after_kill": after_kill,
                  "raw_zeros": raw_zeros,
                  "files": sorted(os.listdir(path))}))
"""


def test_scrape_lists_live_processes_only_and_marks_killed_ones_dead(tmp_path: Path) -> None:
    found = run_python(FORK_SCRIPT, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    parent, child = found["parent"], found["child"]
    (series, parent_writes), (after, writes_after) = found["with_child"], found["after_kill"]
    assert [(c, p) for c, p, _ in series] == sorted([("worker_main", parent), ("worker", child)])
    assert all(value > 10 * MiB for _, _, value in series)
    # The plain MultiProcessCollector would have shown the inherited entry as worker_main at 0 bytes.
    assert found["raw_zeros"] == [{"component": "worker_main", "pid": str(child)}]
    # A SIGKILLed process cannot mark itself dead: the scrape does, and its series goes...
    assert [(c, p) for c, p, _ in after] == [("worker_main", parent)]
    assert f"gauge_liveall_{child}.db" not in found["files"]
    # ...while its counters stay, so sums never go backwards.
    assert f"counter_{child}.db" in found["files"]
    assert parent_writes == writes_after >= 100


def test_start_up_cleanup_removes_only_files_of_processes_that_are_gone(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run_python(
        """
        import json
        from telemetry.process_stats import ProcessStats
        ProcessStats("api").sample()
        print(json.dumps({}))
        """,
        env=env,
    )
    code = "from telemetry.process_stats import ProcessStats; ProcessStats('api').sample(); print('ready', flush=True)"
    alive = subprocess.Popen(
        [sys.executable, "-c", f"{code}; import time; time.sleep(60)"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
    )
    try:
        assert alive.stdout is not None
        assert alive.stdout.readline().strip() == b"ready"
        before = set(os.listdir(tmp_path))
        removed = {Path(p).name for p in exposition.remove_stale_files(str(tmp_path))}
        kept = set(os.listdir(tmp_path))
        assert removed
        assert kept
        assert removed | kept == before
        assert all(name.endswith(f"_{alive.pid}.db") for name in kept)
        assert not any(name.endswith(f"_{alive.pid}.db") for name in removed)
    finally:
        alive.kill()
        alive.wait()
