"""A segment run streams its frames: a segment ten times longer costs no more memory.

Each run happens in a fresh interpreter whose peak RSS (VmHWM) is read at the end; holding the
decoded or stylized frames of a segment would add about 0.7 MB per 640x360 frame (over 100 MB
for the long one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

SCRIPT = r"""
import json, sys
from pathlib import Path
from video.segments import Segment, run_segment
data = sys.stdin.buffer.read()
frames = int(sys.argv[1])
piece = run_segment(data, Segment(0, 0, frames), lambda frame: 255 - frame)
status = Path("/proc/self/status").read_text().splitlines()
peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"peak_kib": peak, "bytes": len(piece)}))
"""


def _peak_mib(data: bytes, frames: int) -> float:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(frames)], input=data, capture_output=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return float(json.loads(result.stdout.decode().strip().splitlines()[-1])["peak_kib"]) / 1024


def test_peak_memory_does_not_grow_with_segment_length(clip: Callable[..., bytes]) -> None:
    data = clip(frames=160, width=640, height=360, gop=30, audio=None)
    short, long = _peak_mib(data, 16), _peak_mib(data, 160)
    assert long - short < 24, f"16 frames: {short:.0f} MiB, 160 frames: {long:.0f} MiB"
