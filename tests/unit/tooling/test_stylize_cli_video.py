"""`animegan stylize clip.mp4`: a clip stylized locally as through the service, beside photos, with the real weights."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animegan.stylize_cli import main as inference_main
from video.probe import probe

Make = Callable[..., bytes]


def test_clips_and_photos_are_stylized_side_by_side_and_a_bad_clip_is_reported(
    tmp_path: Path,
    hayao_weights: Path,
    clip: Make,
    audio_packets: Callable[..., list[tuple[bytes, Fraction, Fraction]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    data = clip(frames=75, width=128, height=96, container="mov", rotation=90)
    (inputs / "holiday.mov").write_bytes(data)
    (inputs / "broken.mp4").write_bytes(data[:5000])
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(inputs / "photo.png")
    out = tmp_path / "out"
    code = inference_main(
        ["stylize", str(inputs), "--out", str(out), "--weights", str(hayao_weights), "--threads", "1"]
    )
    assert code == 1  # one input failed; the others were written
    assert sorted(p.name for p in out.iterdir()) == ["holiday.mp4", "photo.png"]
    err = capsys.readouterr().err
    assert "broken.mp4" in err
    assert "2 written" in err
    source, result = probe(data), probe((out / "holiday.mp4").read_bytes())
    assert result.frame_count == source.frame_count == 75
    assert [p * result.frames.time_base for p in result.frames.pts] == [
        p * source.frames.time_base for p in source.frames.pts
    ]
    assert result.duration == source.duration
    assert result.rotation == source.rotation
    output = (out / "holiday.mp4").read_bytes()
    assert audio_packets(output, ignore_editlist="1") == audio_packets(data, ignore_editlist="1")


def test_the_video_max_side_downscales_the_frames(tmp_path: Path, hayao_weights: Path, clip: Make) -> None:
    (tmp_path / "c.webm").write_bytes(clip(frames=10, width=160, height=96, container="webm", video="libvpx-vp9",
                                           audio="libopus"))  # fmt: skip
    code = inference_main(
        ["stylize", str(tmp_path / "c.webm"), "--out", str(tmp_path / "out"), "--weights", str(hayao_weights),
         "--threads", "1", "--video-max-side", "80"]
    )  # fmt: skip
    assert code == 0
    result = probe((tmp_path / "out" / "c.mp4").read_bytes())
    assert (result.width, result.height) == (80, 48)
