"""Probe, segment runs and the join touch no file: bytes stay in memory from upload to result.

A fresh interpreter runs the whole path with a private TMPDIR; a thread samples the process's open
file descriptors all along. Any regular file opened after start-up (a temp file, even one
already unlinked) or anything left in TMPDIR fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

SCRIPT = r"""
import json, os, stat, sys, threading, time
from fractions import Fraction
from video.join import join_pieces
from video.probe import probe
from video.segments import plan_segments, run_segment

CODE = (".py", ".pyc", ".so")

def regular_files():
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            regular = stat.S_ISREG(os.stat(f"/proc/self/fd/{fd}").st_mode)
        except OSError:
            continue
        # A lazy import lists package folders (a directory fd): only regular files are data.
        if not regular:
            continue
        # Code loaded by a lazy import is not data: modules and libraries are left out.
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")) and not target.endswith(CODE):
            found.add(target)
    return found

data = sys.stdin.buffer.read()
baseline = regular_files()
seen, done = set(), threading.Event()

def sample():
    while not done.is_set():
        seen.update(regular_files() - baseline)
        time.sleep(0.0005)

sampler = threading.Thread(target=sample)
sampler.start()
info = probe(data)
pieces = [run_segment(data, s, lambda f: 255 - f) for s in plan_segments(info.frames, Fraction(1, 3))]
output = join_pieces(pieces, data)
done.set()
sampler.join()
print(json.dumps({"opened": sorted(seen), "bytes": len(output), "pieces": len(pieces)}))
"""


def test_whole_path_opens_no_file_and_leaves_no_temp_file(clip: Callable[..., bytes], tmp_path: Path) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    data = clip(frames=40, faststart=True)
    env = {**os.environ, "TMPDIR": str(private)}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], input=data, capture_output=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert report["pieces"] >= 3
    assert report["bytes"] > 0
    assert report["opened"] == []
    assert list(private.iterdir()) == []
