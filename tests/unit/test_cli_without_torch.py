"""``animegan bench`` without torch: the eager variant is left out of the default and refused when asked for."""

from __future__ import annotations

import pytest

from animegan.cli import _bench_without_torch


def test_default_variants_leave_out_eager(capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench_without_torch(["--sizes", "64x64"]) == ["--sizes", "64x64"]
    assert "torch is not installed, so the eager variant is left out" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--variants", "engine,eager"], ["--variants=eager"], ["--variants", " eager "]])
def test_asking_for_eager_is_refused_with_the_install_hint(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench_without_torch(args) is None
    err = capsys.readouterr().err
    assert "the eager variant needs torch" in err
    assert "pip install 'animegan[torch]' --extra-index-url https://download.pytorch.org/whl/cpu" in err


@pytest.mark.parametrize("args", [["--variants", "engine,ort-whole"], ["--help"], ["--worker", "engine"]])
def test_other_variants_help_and_worker_runs_pass_through(args: list[str]) -> None:
    assert _bench_without_torch(args) == args
