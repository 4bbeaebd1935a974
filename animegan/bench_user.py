"""`animegan bench --user N`: what a user sees, whole processes from start to exit.

N `animegan stylize` processes, each pinned to its own core with one thread, each stylizing
`--images` photos (decode, the generator, PNG encode, write), against the same steps with
OpenVINO's defaults: a small script (`python -m animegan.bench_user --peer ...`) that decodes
alike, exports the generator, reshapes and compiles it per image shape (its fastest setting) and
saves PNGs with Pillow's defaults. Process start, imports, weight loading and first-call kernel
creation all count, as they do for a user. Variants run in interleaved rounds.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from animegan.bench_report import say
from animegan.bench_worker import photo_files

PEER = "openvino"
USER_VARIANTS = ("stylize-int8", "stylize-bf16", "stylize-fp32", "stylize-auto", PEER)


def _command(variant: str, photos: list[Path], out: Path, args: argparse.Namespace, weights: str) -> list[str]:
    corners = "--align-corners" if args.align_corners else "--no-align-corners"
    common = ["--out", str(out), "--threads", "1", "--weights", weights, corners]
    if variant == PEER:
        return [sys.executable, "-m", "animegan.bench_user", "--peer", *common, *map(str, photos)]
    precision = variant.removeprefix("stylize-")
    return [sys.executable, "-m", "animegan", "stylize", *map(str, photos), *common, "--precision", precision]


def _pinned(core: int) -> Callable[[], None]:
    """Runs in the child before exec: its threads (and any runtime's) stay on one core."""
    return lambda: os.sched_setaffinity(0, {core})


def _round(variant: str, photos: list[Path], args: argparse.Namespace, weights: str) -> tuple[float, list[int]]:
    """N pinned processes at once: (images per minute, each process's peak RSS in bytes)."""
    cores = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="animegan-bench-") as folder:
        started = time.perf_counter()
        procs = []
        for i in range(args.user):
            out = Path(folder) / str(i)
            core = cores[i % len(cores)]
            procs.append(
                subprocess.Popen(
                    _command(variant, photos, out, args, weights),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    preexec_fn=_pinned(core),
                    env={**os.environ, "OMP_NUM_THREADS": "1"},
                )
            )
        peaks = []
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                error = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"{variant} failed: {error.strip().splitlines()[-1:]}")
            peaks.append(usage.ru_maxrss * 1024)
        elapsed = time.perf_counter() - started
        written = sum(len(list((Path(folder) / str(i)).glob("*.png"))) for i in range(args.user))
    if written != args.user * len(photos):
        raise RuntimeError(f"{variant}: {written} images written, {args.user * len(photos)} expected")
    return 60 * written / elapsed, peaks


def run(args: argparse.Namespace, weights: str) -> dict[str, Any]:
    """Every user variant, `args.repeats` interleaved rounds."""
    if args.photos is None:
        raise SystemExit("--user needs --photos DIR")
    photos = photo_files(args.photos)[: args.images]
    if len(photos) < args.images:
        raise SystemExit(f"--images {args.images} needs as many photos in {args.photos} (found {len(photos)})")
    variants = [v for v in args.variants if v in USER_VARIANTS] or ["stylize-auto", PEER]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    peaks: dict[str, list[int]] = {v: [] for v in variants}
    for round_index in range(args.repeats):
        for variant in variants if round_index % 2 == 0 else variants[::-1]:
            rate, peak = _round(variant, photos, args, weights)
            rates[variant].append(rate)
            peaks[variant] = [max(a, b) for a, b in zip(peaks[variant] or peak, peak, strict=True)]
    return {"processes": args.user, "images": len(photos), "rates": rates, "peaks": peaks}


def print_user(result: dict[str, Any]) -> None:
    say(
        f"\nuser level: {result['processes']} pinned single-thread process(es) x {result['images']} photos, "
        "whole processes (start, load, decode, stylize, PNG, write)"
    )
    say("| variant | images/min (median) | min-max | vs openvino | peak RSS MB per process |")
    say("|---|---|---|---|---|")
    peer = result["rates"].get(PEER)
    for variant, rates in result["rates"].items():
        ratio = "-" if peer is None else f"{statistics.median(r / p for r, p in zip(rates, peer, strict=True)):.2f}x"
        peaks = "/".join(f"{p / 2**20:.0f}" for p in result["peaks"][variant])
        say(f"| {variant} | {statistics.median(rates):.1f} | {min(rates):.1f}-{max(rates):.1f} | {ratio} | {peaks} |")


def peer(argv: list[str]) -> int:
    """The OpenVINO user script: decode like `animegan stylize`, run OpenVINO's defaults, save PNGs."""
    parser = argparse.ArgumentParser()
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--peer", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--align-corners", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args(argv)
    import numpy as np
    import openvino as ov
    from PIL import Image

    from animegan.bench_peers import to_input, to_rgb
    from imaging.decode import decode_image
    from inference.graphs import whole_model
    from inference.weights import load_state_dict

    core = ov.Core()
    onnx = whole_model(load_state_dict(Path(args.weights)), align_corners=args.align_corners)
    compiled: dict[tuple[int, int], Any] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.photos:
        rgb = np.asarray(decode_image(path.read_bytes(), max_side=1024).image)
        shape = rgb.shape[:2]
        if shape not in compiled:
            model = core.read_model(io.BytesIO(onnx))
            model.reshape([1, 3, *shape])
            compiled[shape] = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": args.threads})
        request = compiled[shape].create_infer_request()
        request.infer({0: to_input(rgb)})
        Image.fromarray(to_rgb(request.get_output_tensor(0).data[0])).save(args.out / f"{path.stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(peer(sys.argv[1:]))
