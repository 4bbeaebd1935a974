"""`animegan bench` picks the style and its upsample mode exactly like `animegan stylize`."""

from __future__ import annotations

import os

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
