"""`animegan bench`: picks the style and its upsample mode exactly like `animegan stylize`; prints
each variant's fidelity against the fp32 engine; caps oneDNN's ISA; times whole user processes;
tables the PNG levels."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from animegan import bench, bench_worker, stylize_cli as cli
from animegan.style_options import chosen_align_corners, chosen_style


@pytest.mark.parametrize(
    ("options", "style", "align_corners"),
    [
        ([], "face_paint_512_v2", True),
        (["--style", "paprika"], "paprika", False),
        (["--weights", "/somewhere/hayao.pt"], "hayao", False),
        (["--weights", "/somewhere/mine.pt"], "face_paint_512_v2", True),
        (["--style", "paprika", "--align-corners"], "paprika", True),
        (["--style", "celeba_distill", "--no-align-corners"], "celeba_distill", False),
    ],
)
def test_bench_and_stylize_read_style_and_align_corners_the_same_way(
    options: list[str], style: str, align_corners: bool
) -> None:
    bench_args = bench.build_parser().parse_args(options)
    stylize_args = cli.build_parser().parse_args(["stylize", "in.png", "--out", "out", *options])
    for args in (bench_args, stylize_args):
        assert chosen_style(args) == style
        assert chosen_align_corners(args, style) is align_corners


def test_bench_rejects_an_unknown_style(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--style", "vangogh"])
    assert "vangogh" in capsys.readouterr().err


def test_bench_worker_reads_the_flag_its_parent_passes() -> None:
    for flag, expected in (("--align-corners", True), ("--no-align-corners", False)):
        args = bench.build_parser().parse_args(["--worker", "engine", "--weights", "random", flag])
        assert args.align_corners is expected
        assert str(args.weights) == "random"


def test_peak_and_current_rss_are_read() -> None:
    assert bench_worker.peak_rss() >= bench_worker.rss() > 0
    busy, total = bench._machine_busy()
    assert 0 < busy < total
    assert bench._process_cpu(os.getpid()) > 0


def test_default_variants_are_those_whose_runtime_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))
    variants = bench._default_variants()
    assert variants[:2] == ["engine", "engine-fp32"]
    assert "eager" not in variants


def test_without_the_peers_the_default_leaves_openvino_out_and_peer_variants_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    assert "openvino" in bench._default_variants()  # the dev environment has the peers extra
    for module in ("onnxruntime", "openvino", "onnx"):
        monkeypatch.setitem(sys.modules, module, None)  # as an install without the extra
    assert "openvino" not in bench._default_variants()
    assert bench.main(["--variants", "engine,ort-whole,engine-bf16-openvino"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: ort-whole, engine-bf16-openvino run on the benchmark's peers, which are not installed"
    )
    assert "pip install 'animegan[peers]'" in err


def tiny_photos(folder: Path, count: int = 2) -> Path:
    """A folder of small JPEG photos (gradients and noise), like the samples but quick to stylize."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        y, x = np.mgrid[0:64, 0:96]
        rgb = np.stack([x * 2, y * 3, (x + y) * (i + 1) % 256], axis=-1) + rng.integers(0, 30, (64, 96, 3))
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"p{i}.jpg", quality=95)
    return folder


def run_bench(options: list[str], hayao_weights: Path, tmp_path: Path) -> dict[str, Any]:
    report = tmp_path / "bench.json"
    assert bench.main([*options, "--weights", str(hayao_weights), "--json", str(report)]) == 0
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def test_bench_prints_each_variant_s_fidelity_against_the_fp32_engine(
    hayao_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tiny_photos(tmp_path / "photos")
    options = ["--sizes", "64x48", "--repeats", "1", "--threads", "1", "--photos", str(photos)]
    variants = run_bench([*options, "--variants", "engine-fp32,engine-fp32-onnxruntime"], hayao_weights, tmp_path)
    found = variants["results"][0]["variants"]
    assert found["engine-fp32"]["psnr"] == float("inf")  # the reference itself
    assert found["engine-fp32-onnxruntime"]["psnr"] >= 60  # ONNX Runtime against oneDNN: within 1 LSB
    assert found["engine-fp32-onnxruntime"]["max_diff"] <= 1
    assert "| PSNR vs engine-fp32 dB | max diff |" in capsys.readouterr().out
    # Without engine-fp32 among the variants, the reference comes from a process of its own.
    alone = run_bench([*options, "--variants", "engine-fp32-onnxruntime"], hayao_weights, tmp_path)
    assert (
        alone["results"][0]["variants"]["engine-fp32-onnxruntime"]["psnr"] == found["engine-fp32-onnxruntime"]["psnr"]
    )


def test_bench_max_isa_caps_the_engine_s_precision_choice(hayao_weights: Path, tmp_path: Path) -> None:
    # Under an AVX2 cap auto has neither bf16 nor int8 units to use: fp32, on oneDNN's AVX2 kernels.
    options = ["--sizes", "32x32", "--repeats", "1", "--threads", "1", "--variants", "engine", "--max-isa", "avx2"]
    result = run_bench(options, hayao_weights, tmp_path)
    assert result["max_isa"] == "AVX2"
    assert result["results"][0]["variants"]["engine"]["precision"] == "fp32 (onednn)"


def test_bench_user_mode_times_whole_stylize_processes_against_openvino(hayao_weights: Path, tmp_path: Path) -> None:
    photos = tiny_photos(tmp_path / "photos", count=2)
    options = ["--user", "1", "--images", "2", "--repeats", "1", "--photos", str(photos)]
    result = run_bench([*options, "--variants", "stylize-fp32,openvino"], hayao_weights, tmp_path)
    user = result["user"]
    assert (user["processes"], user["images"]) == (1, 2)
    assert set(user["rates"]) == {"stylize-fp32", "openvino"}
    assert all(rates[0] > 0 for rates in user["rates"].values())
    assert all(peaks[0] > 30 * 2**20 for peaks in user["peaks"].values())


def test_bench_png_table_covers_every_zlib_level(hayao_weights: Path, tmp_path: Path) -> None:
    photos = tiny_photos(tmp_path / "photos", count=1)
    result = run_bench(["--png", "--photos", str(photos), "--threads", "1"], hayao_weights, tmp_path)
    rows = {row["setting"]: row for row in result["png"]["rows"]}
    assert {f"level {level}" for level in range(10)} <= set(rows)
    assert rows["level 0"]["bytes"] > rows["level 9"]["bytes"]
    # What imaging.encode uses is in the table.
    assert "level 1, Z_RLE" in rows
