"""`animegan stylize --portrait [--crop X,Y,W,H]`: a 512x512 square, the same as stylizing the crop itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animegan.stylize_cli import main
from inference.pipeline import Stylizer

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "samples"


def test_portrait_crop_is_stylized_at_512_like_the_crop_itself(
    tmp_path: Path, hayao_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Image.open(SAMPLES / "chelsea.jpg") as img:
        photo = img.convert("RGB").resize((240, 160))
    photo.save(tmp_path / "cat.png")
    out = tmp_path / "out"
    args = ["stylize", str(tmp_path / "cat.png"), "--out", str(out), "--weights", str(hayao_weights)]
    code = main([*args, "--portrait", "--crop", "40,0,150,150", "--threads", "1"])
    assert code == 0, capsys.readouterr().err

    crop = photo.resize((512, 512), Image.Resampling.LANCZOS, box=(40, 0, 190, 150))
    direct = Stylizer.load("hayao", weights_path=hayao_weights, threads=1).stylize(crop)
    with Image.open(out / "cat.png") as result:
        assert result.size == (512, 512)
        assert np.array_equal(np.asarray(result.convert("RGB")), np.asarray(direct))


def test_crop_mistakes(tmp_path: Path, hayao_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (64, 48), (9, 99, 199)).save(tmp_path / "small.png")
    args = ["stylize", str(tmp_path / "small.png"), "--out", str(tmp_path / "out"), "--weights", str(hayao_weights)]
    assert main([*args, "--crop", "0,0,10,10"]) == 2
    assert "--crop needs --portrait" in capsys.readouterr().err
    assert main([*args, "--portrait", "--crop", "0,0,10"]) == 2
    assert "not four whole numbers" in capsys.readouterr().err
    assert main([*args, "--portrait", "--crop", "20,0,48,48"]) == 1  # past the right edge: that file fails
    assert "reaches past the 64x48 image" in capsys.readouterr().err
