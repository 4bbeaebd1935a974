"""`animegan bench`: latency, peak memory and efficiency of the engine on this machine.

Every variant runs in its own fresh subprocess, so peak RSS (VmHWM) is that variant's alone and
the engine process never imports torch. The variants of one size stay alive together and run one
image each in turn (interleaved rounds), so a noisy host slows all of them alike and their time
ratio stays fair. Per size it prints median and min-max latency, peak RSS, conv GFLOP/s (counted
exactly from the layer shapes) as a share of a 4096x4096 float32 matmul measured in the same run,
and the engine's time relative to plain eager torch (NCHW, no_grad, as the reference test script).

Without real weights (`--weights FILE.pt`, or a style whose file is found) it uses seeded random
weights and says so: timing and memory do not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from inference.errors import WeightsError
from inference.style_options import add_style_arguments, chosen_align_corners, chosen_style

DEFAULT_SIZES = ((512, 512), (1024, 576), (1024, 1024), (1920, 1080))
MATMUL_N = 4096
VARIANTS = ("engine", "eager", "ort-whole")


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


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded weights with torch's default init ranges (what an untrained Generator holds)."""
    from inference.weights import EXPECTED_SHAPES

    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}
    for key, shape in EXPECTED_SHAPES.items():
        if len(shape) == 4:
            bound = 1 / math.sqrt(shape[1] * shape[2] * shape[3])
            state[key] = rng.uniform(-bound, bound, shape).astype(np.float32)
        elif key.endswith(".2.weight") or key.endswith(".3.weight"):
            state[key] = np.ones(shape, np.float32)
        elif key.endswith(".1.bias"):
            fan_in = 9  # the depthwise convs' bias: one input channel, 3x3
            state[key] = rng.uniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), shape).astype(np.float32)
        else:
            state[key] = np.zeros(shape, np.float32)
    return state


# --- worker side: one variant, one size, commands on stdin ---------------------------------------


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    """VmHWM, the peak RSS since the last reset (psutil does not offer it): from /proc/self/status."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _test_image(width: int, height: int) -> np.ndarray:
    """A photo-like uint8 image (gradients plus noise), made without large temporaries."""
    rng = np.random.default_rng(1)
    red = np.linspace(0, 200, width, dtype=np.float32)[None, :]
    green = np.linspace(0, 200, height, dtype=np.float32)[:, None]
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    for channel, plane in enumerate((red + 0 * green, green + 0 * red, (red + green) / 2)):
        noise = rng.integers(-40, 40, (height, width), dtype=np.int16)
        rgb[..., channel] = np.clip(plane + noise, 0, 255)
    return rgb


def _reset_peak_rss() -> None:
    """Resets VmHWM to the current RSS (Linux: writing 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass  # then the peak includes loading too


def _worker(variant: str, width: int, height: int, threads: int, weights: str, align_corners: bool) -> int:
    """Loads one variant, warms it up, then answers `run`, `matmul` and `report` lines on stdin."""
    rgb = _test_image(width, height)
    rss_start = _rss()
    if weights == "random":
        state = random_state_dict()
    else:
        from inference.weights import load_state_dict

        state = load_state_dict(Path(weights))
    run = _loader(variant, state, threads, align_corners)
    del state
    rss_loaded, peak_loading = _rss(), _peak_rss()
    _reset_peak_rss()  # the peak reported is that of a loaded process running jobs
    run(rgb)  # warm-up: first-call allocations and lazy initialisation are not latency
    _say(json.dumps({"ready": True, "rss_start": rss_start, "rss_loaded": rss_loaded, "peak_loading": peak_loading}))
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            cpu, started = time.process_time(), time.perf_counter()
            run(rgb)
            result = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}
        elif command == "matmul":
            result = {"gflops": _matmul_gflops(threads)}
        elif command == "report":
            result = {"peak_rss": _peak_rss(), "rss_idle": _rss(), "torch": "torch" in sys.modules}
        else:
            return 0
        _say(json.dumps(result))
    return 0


def _loader(variant: str, state: dict[str, np.ndarray], threads: int, align_corners: bool) -> Any:
    if variant == "engine":
        from inference.engine import Engine

        engine = Engine(state, align_corners=align_corners, threads=threads)
        return engine.run
    if variant == "ort-whole":
        import onnxruntime as ort

        from inference.graphs import whole_model

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(whole_model(state, align_corners=align_corners), options)

        def run_whole(rgb: np.ndarray) -> np.ndarray:
            x = (rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255) * 2 - 1
            y = session.run(None, {"x": x})[0][0]
            return np.asarray(np.round((np.clip(y, -1, 1) * 0.5 + 0.5) * 255).astype(np.uint8).transpose(1, 2, 0))

        return run_whole
    import torch

    from inference.model import Generator

    torch.set_num_threads(threads)
    net = Generator().eval()
    net.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()}, strict=True)

    def run_eager(rgb: np.ndarray) -> np.ndarray:
        # The reference test script: to_tensor * 2 - 1, NCHW forward under no_grad, back to 8 bits.
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 * 2 - 1
        with torch.no_grad():
            out = net(x, align_corners=align_corners)
        return np.asarray(((out.clip(-1, 1) * 0.5 + 0.5) * 255).round()[0].permute(1, 2, 0).byte().numpy())

    return run_eager


def _matmul_gflops(threads: int) -> float:
    """Median of three 4096x4096 float32 matmuls (torch's BLAS), after one warm-up."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.rand(MATMUL_N, MATMUL_N), torch.rand(MATMUL_N, MATMUL_N)
    torch.mm(a, b)
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * MATMUL_N**3 / (time.perf_counter() - started) / 1e9)
    return statistics.median(rates)


# --- parent side ----------------------------------------------------------------------------------


@dataclass
class _Process:
    variant: str
    proc: subprocess.Popen[str]
    loaded: dict[str, Any] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.variant} worker exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def _spawn(variant: str, size: tuple[int, int], threads: int, weights: str, align_corners: bool) -> _Process:
    command = [sys.executable, "-m", "inference.bench", "--worker", variant, "--sizes", f"{size[0]}x{size[1]}"]
    command += [
        "--threads",
        str(threads),
        "--weights",
        weights,
        "--align-corners" if align_corners else "--no-align-corners",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    process = _Process(variant, proc)
    process.loaded = process._answer()
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
    processes = [_spawn(variant, size, args.threads, weights, args.align_corners) for variant in args.variants]
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
    finally:
        for process in processes:
            process.close()
    foreign = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(total1 - total0, 1e-9)
    flops = conv_flops(size[0], size[1], args.align_corners)
    return {
        "size": size,
        "gflop": flops / 1e9,
        "matmul_gflops": statistics.median(matmul) if matmul else None,
        "foreign_cpu": foreign,
        "variants": {p.variant: {"times": p.times, **reports[p.variant]} for p in processes},
    }


def _say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _print_size(result: dict[str, Any]) -> None:
    width, height = result["size"]
    peak = result["matmul_gflops"]
    line = f"\n{width}x{height}: {result['gflop']:.1f} GFLOP of convs per image"
    line += f"; {MATMUL_N}x{MATMUL_N} matmul peak {peak:.0f} GFLOP/s" if peak else ""
    _say(line + f"; other processes used {result['foreign_cpu']:.0%} of the machine's CPU meanwhile")
    eager = result["variants"].get("eager")
    _say("| variant | median s | min-max s | time vs eager | GFLOP/s | % of matmul | peak RSS MB | idle RSS MB |")
    _say("|" + "---|" * 8)
    for variant, data in result["variants"].items():
        times = data["times"]
        median = statistics.median(times)
        # Paired per round (the variants ran back to back), then the median: robust to host noise.
        ratio = f"{statistics.median(t / e for t, e in zip(times, eager['times'], strict=True)):.2f}x" if eager else "-"
        rate = result["gflop"] / median
        share = f"{rate / peak:.0%}" if peak else "-"
        _say(
            f"| {variant} | {median:.2f} | {min(times):.2f}-{max(times):.2f} | {ratio} | {rate:.0f} | {share} "
            f"| {data['peak_rss'] / 2**20:.0f} | {data['rss_idle'] / 2**20:.0f} |"
        )


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
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads per process")
    add_style_arguments(parser)  # the same --style, --weights and --[no-]align-corners as stylize
    parser.add_argument(
        "--variants",
        type=lambda text: [v.strip() for v in text.split(",")],
        default=["engine", "eager"],
        help="comma list of engine, eager, ort-whole (default engine,eager)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    return parser


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
        width, height = args.sizes[0]
        return _worker(args.worker, width, height, args.threads, str(args.weights), bool(args.align_corners))
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or args.repeats < 1 or args.threads < 1:
        sys.stderr.write(f"error: bad --variants {unknown}, --repeats or --threads\n")
        return 2
    try:
        weights = _resolve(args)
    except WeightsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    machine = _cpu_model()
    _say(f"machine: {machine}, {os.cpu_count()} CPUs; {args.threads} thread(s) per process")
    _say(f"weights: {weights if weights != 'random' else 'none found - seeded random weights (same cost)'}")
    _say(f"upsample align_corners={args.align_corners}; {args.repeats} interleaved round(s) per size after a warm-up")
    results = []
    for size in args.sizes:
        result = _bench_size(size, args, weights)
        _print_size(result)
        results.append(result)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "threads": args.threads, "results": results}, indent=2))
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
