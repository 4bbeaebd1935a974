"""Counting temporary files: a private TMPDIR, before/after listings, and files held open by real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from loadtest.tempfiles import TempWatch, list_files, multiprocess_dirs, open_temp_files

# A child that behaves like a careless upload handler: an unlinked temp file held open, and a named one kept.
CHILD = """
import sys, tempfile, time
anonymous = tempfile.TemporaryFile()
anonymous.write(b"x" * 1000)
named = tempfile.NamedTemporaryFile(delete=False)
print(named.name, flush=True)
time.sleep(60)
"""


def start_child(tmpdir: Path, env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    env = {"TMPDIR": str(tmpdir), "PATH": "/usr/bin:/bin", **(env_extra or {})}
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def test_list_files_walks_and_excludes(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "r.csv").write_text("x")
    found, cut = list_files(tmp_path, exclude=(tmp_path / "report",))
    assert found == {str(tmp_path / "a" / "b" / "f")}
    assert not cut


def test_files_held_open_are_seen_even_when_unlinked(tmp_path: Path) -> None:
    child, named = start_child(tmp_path)
    try:
        held = open_temp_files([psutil.Process(child.pid)], [tmp_path])
    finally:
        child.kill()
        child.wait()
    assert held[named] == child.pid
    assert any(target.endswith(" (deleted)") for target in held)


def test_watch_counts_what_the_stack_creates_after_the_baseline(tmp_path: Path) -> None:
    private, report = tmp_path / "private", tmp_path / "report"
    private.mkdir()
    report.mkdir()
    (private / "before.txt").write_text("created at start-up: not counted")
    watch = TempWatch(private=private, exclude=(report,))
    watch.baseline([])
    child, named = start_child(private)
    try:
        time.sleep(0.2)
        processes = [psutil.Process(child.pid)]
        watch.observe(processes)
        (report / "requests.csv").write_text("the runner's own files are not counted")
        result = watch.finish(processes)
    finally:
        child.kill()
        child.wait()
    assert named in result.stack_files
    assert any(path.startswith(str(private)) and path != named for path in result.stack_files)  # the unlinked one
    assert str(private / "before.txt") not in result.stack_files
    assert not any(path.startswith(str(report)) for path in result.stack_files + result.unattributed)
    assert result.count == len(result.stack_files) == 2


def test_prometheus_multiprocess_files_are_listed_apart(tmp_path: Path) -> None:
    private, metrics = tmp_path / "private", tmp_path / "private" / "metrics"
    metrics.mkdir(parents=True)
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={"PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    )
    try:
        processes = [psutil.Process(sleeper.pid)]
        # Until the child has exec'd, /proc/<pid>/environ is still the parent's: wait for its own.
        deadline = time.monotonic() + 10
        while "PROMETHEUS_MULTIPROC_DIR" not in processes[0].environ() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert multiprocess_dirs(processes) == {str(metrics) + "/"}
        watch = TempWatch(private=private)
        watch.baseline(processes)
        (metrics / "counter_123.db").write_bytes(b"\0" * 16)
        result = watch.finish(processes)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.metrics_files == [str(metrics / "counter_123.db")]
    assert result.count == 0


def test_a_quiet_stack_creates_nothing(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        processes = [psutil.Process(sleeper.pid)]
        watch = TempWatch(private=private)
        watch.baseline(processes)
        watch.observe(processes)
        result = watch.finish(processes)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.count == 0
    assert str(private) in result.roots


def test_the_runners_own_files_never_count_even_when_a_process_holds_them(tmp_path: Path) -> None:
    private, report = tmp_path / "private", tmp_path / "report"
    private.mkdir()
    report.mkdir()
    watch = TempWatch(private=private, exclude=(report,))
    watch.baseline([])
    code = f"import time; handle = open({str(report / 'metrics.csv')!r}, 'w'); print('', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        child.stdout.readline()
        processes = [psutil.Process(child.pid)]
        watch.observe(processes)
        result = watch.finish(processes)
    finally:
        child.kill()
        child.wait()
    assert result.count == 0
