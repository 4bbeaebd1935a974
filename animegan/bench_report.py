"""The tables `animegan bench` prints: latency, throughput and fidelity per variant, side by side."""

from __future__ import annotations

import statistics
import sys
from typing import Any

import numpy as np

from animegan.bench_peers import MATMUL_N

PEER = "openvino"


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def fidelity(output: np.ndarray, reference: np.ndarray | None) -> dict[str, float | int | None]:
    """PSNR (dB) and largest per-pixel difference of a variant's output against the fp32 engine's."""
    if reference is None:
        return {"psnr": None, "max_diff": None}
    return {"psnr": psnr(output, reference), "max_diff": int(np.abs(output.astype(int) - reference).max())}


def _fidelity_cells(data: dict[str, Any]) -> str:
    if data.get("psnr") is None:
        return "- | -"
    value = data["psnr"]
    return f"{'identical' if value == float('inf') else f'{value:.1f}'} | {data['max_diff']}"


def print_size(result: dict[str, Any]) -> None:
    width, height = result["size"]
    peak = result["matmul_gflops"]
    line = f"\n{width}x{height}: {result['gflop']:.1f} GFLOP of convs per image"
    line += f"; {MATMUL_N}x{MATMUL_N} matmul peak {peak:.0f} GFLOP/s" if peak else ""
    say(line + f"; other processes used {result['foreign_cpu']:.0%} of the machine's CPU meanwhile")
    eager, peer = result["variants"].get("eager"), result["variants"].get(PEER)
    say(
        "| variant | precision | median s | min-max s | time vs eager | time vs openvino | GFLOP/s | % of matmul "
        "| PSNR vs engine-fp32 dB | max diff | peak RSS MB | idle RSS MB |"
    )
    say("|" + "---|" * 12)
    for variant, data in result["variants"].items():
        times = data["times"]
        median = statistics.median(times)
        rate = result["gflop"] / median
        share = f"{rate / peak:.0%}" if peak else "-"
        say(
            f"| {variant} | {data['precision']} | {median:.2f} | {min(times):.2f}-{max(times):.2f} "
            f"| {paired(times, eager)} | {paired(times, peer)} | {rate:.0f} | {share} | {_fidelity_cells(data)} "
            f"| {data['peak_rss'] / 2**20:.0f} | {data['rss_idle'] / 2**20:.0f} |"
        )


def paired(times: list[float], other: dict[str, Any] | None) -> str:
    # Paired per round (the variants ran back to back), then the median: robust to host noise.
    if other is None:
        return "-"
    return f"{statistics.median(t / o for t, o in zip(times, other['times'], strict=True)):.2f}x"


def print_throughput(result: dict[str, Any], latency: dict[str, Any]) -> None:
    width, height = result["size"]
    say(f"\n{width}x{height}, throughput: {result['processes']} single-thread process(es) per variant, one per core")
    # CPU seconds per image do not count the time other programs took the cores: on a busy host,
    # images per CPU-minute (each process's median) compare variants where wall time cannot.
    say(
        "| variant | precision | images/min (median) | min-max | vs openvino | CPU s per image | images per CPU-min "
        "| vs openvino | PSNR vs engine-fp32 dB | max diff | peak RSS MB per process |"
    )
    say("|" + "---|" * 11)
    peer = result["variants"].get(PEER)
    for variant, data in result["variants"].items():
        rates = data["images_per_min"]
        ratio = "-"
        if peer is not None:
            ratio = f"{statistics.median(r / p for r, p in zip(rates, peer['images_per_min'], strict=True)):.2f}x"
        peaks = "/".join(f"{value / 2**20:.0f}" for value in data["peak_rss"])
        cells = _fidelity_cells(latency["variants"].get(variant, {}))
        cpu, cpu_rate = _cpu_rate(data)
        cpu_ratio = "-" if peer is None else f"{cpu_rate / _cpu_rate(peer)[1]:.2f}x"
        say(
            f"| {variant} | {data['precision']} | {statistics.median(rates):.1f} | {min(rates):.1f}-{max(rates):.1f} "
            f"| {ratio} | {cpu:.2f} | {cpu_rate:.1f} | {cpu_ratio} | {cells} | {peaks} |"
        )


def _cpu_rate(data: dict[str, Any]) -> tuple[float, float]:
    """Median CPU seconds per image, and images per minute if each process had its core to itself."""
    per_process = [statistics.median(cpu) for cpu in data.get("cpu_seconds", []) if cpu]
    if not per_process:
        return float("nan"), float("nan")
    return statistics.median(per_process), sum(60 / seconds for seconds in per_process)
