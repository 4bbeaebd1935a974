"""`animegan bench`: latency, throughput, fidelity, peak memory and efficiency of the engine on this machine.

Every variant runs in its own fresh subprocess (`animegan.bench_worker`), so peak RSS (VmHWM) is
that variant's alone and the engine process never imports torch. The variants of one size stay
alive together and run one image each in turn (interleaved rounds), so a noisy host slows all of
them alike and their ratios stay fair. Per size it prints median and min-max latency, peak RSS,
conv GFLOP/s (counted exactly from the layer shapes) as a share of a 4096x4096 float32 matmul
measured in the same run, the precision each variant computed in, time ratios against plain
eager torch and against the OpenVINO peer (whole graph, static shape, its default settings), and
each variant's PSNR and largest per-pixel difference against the fp32 engine's output.

`--processes N` adds the service's layout: N single-thread processes per variant, each pinned to
its own core, all running an image at once; it prints images per minute and each process's peak
RSS, every variant in the same interleaved rounds. `--user N` measures what a user sees instead
(`animegan.bench_user`), `--png` the results' PNG encode per zlib level (`animegan.bench_png`),
`--picture FILE` writes the fp32 and int8 results side by side (`animegan.bench_picture`).
`--max-isa` caps oneDNN's instruction set (ONEDNN_MAX_CPU_ISA) in the variants' processes: what
an older CPU gets (AVX2 as on Zen 3; AVX512_CORE_VNNI as on Cascade Lake).

`--photos DIR`: the first photo (resized and cropped to each size) is the image, all of them the
calibration set of `openvino-int8`; without it a synthetic image. Without real weights
(`--weights FILE.pt`, or a style whose file is found) it uses seeded random weights and says so:
timing and memory do not depend on the values (fidelity does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from animegan import bench_picture, bench_png, bench_report, bench_user, bench_worker
from animegan.bench_report import PEER, say as _say
from animegan.bench_worker import VARIANTS
from animegan.style_options import add_precision_argument, add_style_arguments, chosen_align_corners, chosen_style
from inference.errors import WeightsError
from inference.precision import ISA_CAPS, bf16_flags_line, capped_flags, cpu_model, read_cpu_flags

DEFAULT_SIZES = ((512, 512), (1024, 576), (1024, 1024), (1920, 1080))
REFERENCE = "engine-fp32"


def conv_flops(width: int, height: int, align_corners: bool) -> int:
    """Multiply-adds x 2 of every conv of the generator (`inference.network`) for one width x height image."""
    from inference import network

    # Map size per resolution level; an upsample resets its level's size: align_corners resizes
    # back to the exact size, scale-2 upsampling doubles what is left.
    sizes = {0: (height, width), 1: (height // 2, width // 2), 2: (height // 2 // 2, width // 2 // 2)}
    total = 0
    for entry in network.LAYERS:
        if isinstance(entry, network.Upsample):
            below = sizes[entry.level + 1]
            sizes[entry.level] = sizes[entry.level] if align_corners else (2 * below[0], 2 * below[1])
        for conv in network.convs((entry,)):
            rows, cols = sizes[conv.level]
            total += 2 * rows * cols * conv.out_ch * (conv.in_ch // conv.groups) * conv.kernel * conv.kernel
    return total


# --- parent side ----------------------------------------------------------------------------------


@dataclass
class _Process:
    variant: str
    proc: subprocess.Popen[str]
    errors: IO[bytes]
    loaded: dict[str, Any] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def answer(self) -> dict[str, Any]:
        """The next answer line of the process (the throughput mode sends to all before reading any)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.errors.seek(0)
            tail = self.errors.read().decode(errors="replace").strip().splitlines()[-20:]
            raise RuntimeError(f"{self.variant} worker exited: " + "\n".join(tail))
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.errors.close()


def _spawn(
    variant: str, size: tuple[int, int], args: argparse.Namespace, weights: str, *, threads: int, cpu: int | None = None
) -> _Process:
    command = [sys.executable, "-m", "animegan.bench", "--worker", variant, "--sizes", f"{size[0]}x{size[1]}"]
    command += [
        "--threads",
        str(threads),
        "--weights",
        weights,
        "--precision",
        args.precision,
        "--align-corners" if args.align_corners else "--no-align-corners",
    ]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    if args.photos is not None:
        command += ["--photos", str(args.photos)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if args.max_isa:
        env["ONEDNN_MAX_CPU_ISA"] = args.max_isa
    # What a variant's libraries print goes to a file (a pipe nobody reads would fill and block it).
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _Process.close)
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
    process = _Process(variant, proc, errors)
    process.loaded = process.answer()
    return process


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (idle and iowait are not busy)."""
    times = psutil.cpu_times()
    total = float(sum(times))
    return total - times.idle - getattr(times, "iowait", 0.0), total


def _bench_size(size: tuple[int, int], args: argparse.Namespace, weights: str) -> dict[str, Any]:
    processes = [_spawn(variant, size, args, weights, threads=args.threads) for variant in args.variants]
    try:
        busy0, total0 = _machine_busy()
        own0 = sum(_process_cpu(p.proc.pid) for p in processes) + time.process_time()
        matmul = []
        for round_index in range(args.repeats):
            # Alternate the order every round so neither variant always runs right after the other.
            order = processes if round_index % 2 == 0 else processes[::-1]
            for process in order:
                answer = process.ask("run")
                process.times.append(answer["seconds"])
                process.cpu.append(answer["cpu_seconds"])
            torch_process = next((p for p in processes if p.variant == "eager"), None)
            if torch_process is not None:
                matmul.append(torch_process.ask("matmul")["gflops"])
        busy1, total1 = _machine_busy()
        own1 = sum(_process_cpu(p.proc.pid) for p in processes) + time.process_time()
        reports = {p.variant: {**p.loaded, **p.ask("report")} for p in processes}
        outputs = {p.variant: bench_worker.decode_output(p.ask("output")["output"], *size) for p in processes}
    finally:
        for process in processes:
            process.close()
    reference = outputs.get(REFERENCE)
    if reference is None:
        reference = _reference_output(size, args, weights)
    for variant, output in outputs.items():
        reports[variant].update(bench_report.fidelity(output, reference))
    foreign = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(total1 - total0, 1e-9)
    flops = conv_flops(size[0], size[1], args.align_corners)
    return {
        "size": size,
        "gflop": flops / 1e9,
        "matmul_gflops": statistics.median(matmul) if matmul else None,
        "foreign_cpu": foreign,
        "variants": {p.variant: {"times": p.times, **reports[p.variant]} for p in processes},
    }


def _reference_output(size: tuple[int, int], args: argparse.Namespace, weights: str) -> Any:
    """The fp32 engine's output for the size's image (the fidelity reference), from a process of its own."""
    process = _spawn(REFERENCE, size, args, weights, threads=args.threads)
    try:
        return bench_worker.decode_output(process.ask("output")["output"], *size)
    finally:
        process.close()


def _throughput(size: tuple[int, int], args: argparse.Namespace, weights: str) -> dict[str, Any]:
    """N pinned single-thread processes per variant run an image at once; images per minute per round."""
    cores = sorted(os.sched_getaffinity(0))
    groups = {
        variant: [
            _spawn(variant, size, args, weights, threads=1, cpu=cores[i % len(cores)]) for i in range(args.processes)
        ]
        for variant in args.variants
    }
    rates: dict[str, list[float]] = {variant: [] for variant in groups}
    try:
        for round_index in range(args.repeats):
            order = list(groups) if round_index % 2 == 0 else list(groups)[::-1]
            for variant in order:
                started = time.perf_counter()
                for process in groups[variant]:  # all start before any is waited for
                    assert process.proc.stdin is not None
                    process.proc.stdin.write("run\n")
                    process.proc.stdin.flush()
                for process in groups[variant]:
                    answer = process.answer()
                    process.times.append(answer["seconds"])
                    process.cpu.append(answer["cpu_seconds"])
                rates[variant].append(60 * len(groups[variant]) / (time.perf_counter() - started))
        reports = {variant: [{**p.loaded, **p.ask("report")} for p in group] for variant, group in groups.items()}
    finally:
        for group in groups.values():
            for process in group:
                process.close()
    return {
        "size": size,
        "processes": args.processes,
        "variants": {
            variant: {
                "images_per_min": rates[variant],
                "seconds": [p.times for p in groups[variant]],
                "cpu_seconds": [p.cpu for p in groups[variant]],
                "peak_rss": [r["peak_rss"] for r in reports[variant]],
                "precision": reports[variant][0]["precision"],
                "cpus": [r["cpus"] for r in reports[variant]],
            }
            for variant in groups
        },
    }


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        width, _, height = item.strip().lower().partition("x")
        if not width.isdigit() or not height.isdigit() or int(width) < 1 or int(height) < 1:
            raise argparse.ArgumentTypeError(f"size {item!r} is not WIDTHxHEIGHT")
        sizes.append((int(width), int(height)))
    return sizes


def build_parser(prog: str = "animegan bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0] if __doc__ else None)
    default_sizes = ",".join(f"{w}x{h}" for w, h in DEFAULT_SIZES)
    parser.add_argument("--sizes", type=_parse_sizes, default=list(DEFAULT_SIZES), help=f"default {default_sizes}")
    parser.add_argument("--repeats", type=int, default=3, help="timed images per variant and size (default 3)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads per process")
    add_style_arguments(parser)  # the same --style, --weights and --[no-]align-corners as stylize
    add_precision_argument(parser)  # the `engine` variant's; engine-fp32 / engine-bf16 fix theirs
    parser.add_argument(
        "--variants",
        type=lambda text: [v.strip() for v in text.split(",")],
        default=None,
        help=f"comma list of {', '.join(VARIANTS)} (default engine,engine-fp32,openvino,eager: "
        "those whose runtime is installed)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="N",
        help="also measure throughput: N pinned single-thread processes per variant (e.g. the core count)",
    )
    parser.add_argument(
        "--photos",
        type=Path,
        metavar="DIR",
        help="photos: the first is the image (resized to each size), all calibrate openvino-int8",
    )
    parser.add_argument(
        "--max-isa",
        choices=sorted(ISA_CAPS),
        type=str.upper,
        help="cap oneDNN's instruction set in the variants' processes (ONEDNN_MAX_CPU_ISA): older CPUs",
    )
    parser.add_argument(
        "--user",
        type=int,
        default=0,
        metavar="N",
        help="measure what a user sees instead: N pinned `animegan stylize` processes against OpenVINO's "
        "(needs --photos)",
    )
    parser.add_argument("--images", type=int, default=4, help="with --user: photos per process (default 4)")
    parser.add_argument(
        "--png", action="store_true", help="measure the results' PNG encode time and size per zlib level instead"
    )
    parser.add_argument(
        "--picture", type=Path, metavar="FILE", help="write fp32 and int8 results of --photos side by side instead"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    return parser


# Variants that run on the `peers` extra's runtimes (graphs built with onnx), and the modules they import.
PEER_MODULES: dict[str, tuple[str, ...]] = {
    "engine-fp32-onnxruntime": ("onnx", "onnxruntime"),
    "engine-bf16-openvino": ("onnx", "openvino"),
    "openvino": ("onnx", "openvino"),
    "openvino-f32": ("onnx", "openvino"),
    "openvino-int8": ("onnx", "openvino", "nncf"),
    "ort-whole": ("onnx", "onnxruntime"),
}


def _without_peers(variants: Sequence[str]) -> list[str]:
    """The asked variants whose runtime is not installed (the `peers` extra; NNCF is in dev)."""
    import importlib.util

    return [v for v in variants if any(importlib.util.find_spec(m) is None for m in PEER_MODULES.get(v, ()))]


def _default_variants() -> list[str]:
    """engine (asked precision), engine-fp32, and the peers whose runtime is installed."""
    import importlib.util

    variants = ["engine", "engine-fp32", *([] if _without_peers([PEER]) else [PEER])]
    return [*variants, "eager"] if importlib.util.find_spec("torch") is not None else variants


def _resolve(args: argparse.Namespace) -> str:
    """The weights file to use, or "random"; fills in the upsample mode from the style."""
    from inference import weights as registry

    style = chosen_style(args)
    args.align_corners = chosen_align_corners(args, style)
    if args.weights is not None:
        return str(registry.resolve_weights(style, weights_path=args.weights))
    try:
        return str(registry.resolve_weights(style))
    except WeightsError:
        return "random"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})  # pinned before any runtime starts its threads
        width, height = args.sizes[0]
        weights_arg = str(args.weights)
        return bench_worker.serve(
            args.worker, width, height, args.threads, weights_arg, bool(args.align_corners), args.precision, args.photos
        )
    if args.variants is None:
        user = [*bench_user.USER_VARIANTS[:2], *([] if _without_peers([PEER]) else [PEER])]
        args.variants = user if args.user else _default_variants()
    known = bench_user.USER_VARIANTS if args.user else VARIANTS
    unknown = [v for v in args.variants if v not in known]
    if unknown or args.repeats < 1 or args.threads < 1 or args.processes < 0 or args.user < 0:
        sys.stderr.write(f"error: bad --variants {unknown} (known: {', '.join(known)}), --repeats or --threads\n")
        return 2
    missing = _without_peers(args.variants)
    if missing:
        sys.stderr.write(
            f"error: {', '.join(missing)} run on the benchmark's peers, which are not installed: "
            "pip install 'animegan[peers]' (and nncf for openvino-int8)\n"
        )
        return 2
    try:
        weights = _resolve(args)
    except WeightsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    machine = cpu_model()
    flags = bf16_flags_line(capped_flags(read_cpu_flags(), args.max_isa))
    cap = f" (ONEDNN_MAX_CPU_ISA={args.max_isa})" if args.max_isa else ""
    _say(f"machine: {machine}, {len(os.sched_getaffinity(0))} CPUs; {args.threads} thread(s) per process")
    _say(f"cpu flags that decide the precision: {flags}{cap}; engine precision asked: {args.precision}")
    _say(f"weights: {weights if weights != 'random' else 'none found - seeded random weights (same cost)'}")
    _say(f"image: {'first of ' + str(args.photos) if args.photos else 'synthetic'}; align_corners={args.align_corners}")
    _say(f"{args.repeats} interleaved round(s) per size after a warm-up")
    report: dict[str, Any] = {"machine": machine, "flags": flags, "max_isa": args.max_isa, "threads": args.threads}
    if args.picture is not None:
        report["picture"] = bench_picture.run(args, weights)
        bench_picture.print_picture(report["picture"])
    elif args.png:
        report["png"] = bench_png.run(args, weights)
        bench_png.print_png(report["png"])
    elif args.user:
        report["user"] = bench_user.run(args, weights)
        bench_user.print_user(report["user"])
    else:
        report.update(results=[], throughput=[])
        for size in args.sizes:
            report["results"].append(_bench_size(size, args, weights))
            bench_report.print_size(report["results"][-1])
            if args.processes:
                report["throughput"].append(_throughput(size, args, weights))
                bench_report.print_throughput(report["throughput"][-1], report["results"][-1])
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
