"""`animegan stylize clip.mp4`: a clip stylized locally the way the service does it, with a progress bar.

The clip is mapped read-only (``mmap``: pages come from the file as the demuxer reads them, nothing is
copied whole), probed, cut into segments of about two seconds and run segment by segment through this
process's engine (``video.segments``), then its pieces are joined with the clip's original sound
(``video.join``) into ``OUT/<stem>.mp4``. Frames, timestamps, duration and rotation are kept exactly, as
through the service; nothing else is written. The service's limits do not apply here (a local file may be
long), only the frame size (4K) and ``--video-max-side``.

Reached from ``animegan stylize`` (``animegan.stylize_cli``) for files ending in a clip's extension.
"""

from __future__ import annotations

import argparse
import dataclasses
import mmap
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.errors import InferenceError
from video.errors import InvalidVideoError, VideoError
from video.join import join_pieces
from video.probe import Limits, probe
from video.segments import plan_segments, run_segment

if TYPE_CHECKING:
    from inference.pipeline import Stylizer

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv")
DEFAULT_VIDEO_MAX_SIDE = 720
# A local clip may be as long as its owner likes; frames are still bounded (24 h at 60 fps).
LOCAL_MAX_BYTES = 1 << 40
LOCAL_MAX_SECONDS = 24 * 3600.0
LOCAL_MAX_FRAMES = 24 * 3600 * 60


def add_video_arguments(parser: argparse.ArgumentParser, positive_int: Callable[[str], int]) -> None:
    """Adds ``--video-max-side`` to the ``stylize`` command."""
    parser.add_argument(
        "--video-max-side",
        type=positive_int,
        default=DEFAULT_VIDEO_MAX_SIDE,
        metavar="N",
        help=f"clips: downscale frames so the longest side is at most N (default {DEFAULT_VIDEO_MAX_SIDE})",
    )


def is_clip(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def stylize_clips(stylizer: Stylizer, clips: Sequence[Path], out_dir: Path, *, max_side: int) -> int:
    """Stylize each clip in turn into ``out_dir``; returns how many were written (failures are reported)."""
    written = 0
    for path in clips:
        target = out_dir / (path.stem + ".mp4")
        try:
            stylize_clip(stylizer, path, target, max_side=max_side)
        except (VideoError, InferenceError) as exc:
            sys.stderr.write(f"error: {path}: {exc}\n")
            continue
        except OSError as exc:
            sys.stderr.write(f"error: {path}: {exc.strerror or exc}\n")
            continue
        written += 1
    return written


def stylize_clip(stylizer: Stylizer, path: Path, target: Path, *, max_side: int) -> None:
    """Stylize the clip at ``path`` into the MP4 ``target``, showing frames done on stderr."""
    with path.open("rb") as file:
        if path.stat().st_size == 0:
            raise InvalidVideoError("The file is empty: no video data in it.")
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    # Not closed here: views of it may outlive this call in a traceback; the mapping goes with its last view.
    output = _stylized(stylizer, memoryview(mapped), path.name, max_side)
    target.write_bytes(output)


def _stylized(stylizer: Stylizer, data: memoryview, name: str, max_side: int) -> bytes:
    from tqdm import tqdm

    limits = Limits(max_bytes=LOCAL_MAX_BYTES, max_seconds=LOCAL_MAX_SECONDS, max_frames=LOCAL_MAX_FRAMES)
    info = probe(data, dataclasses.replace(limits, max_side=max_side))
    plan = plan_segments(info.frames)
    with tqdm(total=info.frame_count, unit="frame", desc=name, file=sys.stderr, disable=None) as bar:

        def stylize(frame: np.ndarray) -> np.ndarray:
            out: np.ndarray = stylizer.engine.run(frame)
            bar.update(1)
            return out

        pieces = [run_segment(data, segment, stylize, info=info) for segment in plan]
    return join_pieces(pieces, data, info=info)
