"""The `animegan` command: offline stylize batches, styles, weights fetch/verify, and the dispatcher."""

from __future__ import annotations

import http.server
import io
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from animegan.cli import main as animegan_main
from animegan.stylize_cli import main as inference_main
from imaging.heif import register_decoder

ROOT = Path(__file__).resolve().parents[3]


def write_image(path: Path, size: tuple[int, int], fmt: str, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)
    return path


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


# --- stylize with the real weights (images <= 128 px) -------------------------------------------


def test_batch_reports_a_bad_file_and_goes_on(
    tmp_path: Path, hayao_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in"
    write_image(inputs / "a.png", (96, 64), "PNG")
    (inputs / "b.png").write_bytes(b"this is not an image, whatever its name says")
    write_image(inputs / "c.JPG", (64, 128), "JPEG", seed=1)
    register_decoder()  # Pillow writes HEIF through pillow-heif
    write_image(inputs / "d.HEIC", (64, 48), "HEIF", seed=2)  # what phones send, taken from folders too
    (inputs / "notes.txt").write_text("ignored: not an image extension")
    (inputs / "sub").mkdir()
    write_image(inputs / "sub" / "deeper.png", (32, 32), "PNG")  # folders are not recursed
    out = tmp_path / "out"

    code = inference_main(
        [
            "stylize",
            str(inputs),
            "--out",
            str(out),
            "--weights",
            str(hayao_weights),
            "--max-side",
            "96",
            "--threads",
            "1",
        ]
    )

    captured = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "d.png"]
    assert image_size(out / "a.png") == (96, 64)
    assert image_size(out / "c.png") == (48, 96)
    assert image_size(out / "d.png") == (64, 48)
    assert f"error: {inputs / 'b.png'}: This data is not an accepted image" in captured.err
    assert "3 written" in captured.err
    assert "1 failed" in captured.err
    with Image.open(out / "a.png") as result, Image.open(inputs / "a.png") as source:
        assert result.mode == "RGB"
        assert result.tobytes() != source.convert("RGB").tobytes()


def test_files_missing_paths_collisions_and_webp_output(
    tmp_path: Path, hayao_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_image(tmp_path / "one" / "photo.png", (40, 30), "PNG")
    second = write_image(tmp_path / "two" / "photo.webp", (30, 40), "WEBP")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "out" / "nested"

    inputs = [str(first), str(missing), str(second)]
    options = ["--out", str(out), "--weights", str(hayao_weights), "--format", "webp", "--no-align-corners"]
    code = animegan_main(["stylize", *inputs, *options, "--threads", "1"])

    captured = capsys.readouterr()
    assert code == 1
    assert [p.name for p in out.iterdir()] == ["photo.webp"]
    with Image.open(out / "photo.webp") as result:
        assert result.format == "WEBP"
        assert result.size == (40, 30)
    assert f"error: {missing}: no such file or folder" in captured.err
    assert f"error: {second}: skipped, {out / 'photo.webp'} was already written from {first}" in captured.err


def test_all_good_inputs_exit_zero_and_jpeg_gets_jpg(
    tmp_path: Path, hayao_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_image(tmp_path / "pic.jpeg", (64, 48), "JPEG")
    out = tmp_path / "out"
    code = inference_main(
        ["stylize", str(source), "--out", str(out), "--weights", str(hayao_weights), "--format", "jpeg"]
    )
    assert code == 0, capsys.readouterr().err
    with Image.open(out / "pic.jpg") as result:
        assert result.format == "JPEG"
        assert result.size == (64, 48)


def test_unusable_weights_file_fails_with_its_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_image(tmp_path / "pic.png", (16, 16), "PNG")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    code = inference_main(["stylize", str(source), "--out", str(tmp_path / "out"), "--weights", str(broken)])
    assert code == 1
    assert str(broken) in capsys.readouterr().err


# --- usage errors (no model needed) -------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        [],  # --out missing
        ["--out", "OUT", "--max-side", "0"],
        ["--out", "OUT", "--threads", "zero"],
        ["--out", "OUT", "--style", "vangogh"],
        ["--out", "OUT", "--format", "gif"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    source = write_image(tmp_path / "pic.png", (8, 8), "PNG")
    args = [a.replace("OUT", str(tmp_path / "out")) for a in extra]
    assert inference_main(["stylize", str(source), *args]) == 2
    assert "usage: animegan stylize" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_image(tmp_path / "pic.png", (8, 8), "PNG")
    (tmp_path / "out").write_text("a file")
    assert inference_main(["stylize", str(source), "--out", str(tmp_path / "out")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_no_images_found_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert inference_main(["stylize", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "no .jpg/.jpeg/.png/.webp/.heic/.heif files in this folder" in err
    assert "no input images found" in err


# --- styles and weights -------------------------------------------------------------------------


@pytest.fixture
def weights_env(tmp_path: Path, hayao_weights: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ANIMEGAN_WEIGHTS_DIR holding hayao.pt only, and an empty ANIMEGAN_CACHE_DIR."""
    weights_dir = tmp_path / "weights-dir"
    weights_dir.mkdir()
    shutil.copyfile(hayao_weights, weights_dir / "hayao.pt")
    monkeypatch.setenv("ANIMEGAN_WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setenv("ANIMEGAN_CACHE_DIR", str(tmp_path / "cache"))
    return weights_dir


def test_styles_lists_every_style_and_where_its_weights_are(
    weights_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert animegan_main(["styles"]) == 0
    out = capsys.readouterr().out
    for name in ("face_paint_512_v2 (default)", "face_paint_512_v1", "celeba_distill", "paprika", "hayao"):
        assert name in out
    assert f"weights: {weights_env / 'hayao.pt'}" in out
    assert "weights: not found. Run `animegan weights fetch paprika`" in out
    assert "align_corners: true" in out
    assert "align_corners: false" in out
    assert "non-commercial" in out


@pytest.fixture
def served_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "served"
    root.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_weights_fetch_from_a_mirror(
    tmp_path: Path, hayao_weights: Path, served_dir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, base = served_dir
    shutil.copyfile(hayao_weights, root / "hayao.pt")
    cache = tmp_path / "cache"
    code = animegan_main(
        ["weights", "fetch", "hayao", "--cache-dir", str(cache), "--url", f"{base}/hayao.pt", "--quiet"]
    )
    assert code == 0
    assert f"hayao: {cache / 'weights' / 'hayao.pt'} (verified)" in capsys.readouterr().out
    assert (cache / "weights" / "hayao.pt").read_bytes() == hayao_weights.read_bytes()


def test_weights_fetch_offline_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/paprika.pt"
    code = animegan_main(["weights", "fetch", "paprika", "--cache-dir", str(tmp_path), "--url", url, "--quiet"])
    assert code == 1
    assert "If this machine is offline" in capsys.readouterr().err


def test_weights_verify(tmp_path: Path, hayao_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert animegan_main(["weights", "verify", "hayao", str(hayao_weights)]) == 0
    assert "is valid" in capsys.readouterr().out
    assert animegan_main(["weights", "verify", "paprika", str(hayao_weights)]) == 1
    assert "expected git blob id" in capsys.readouterr().err


# --- the dispatcher -----------------------------------------------------------------------------


def test_dispatcher_help_version_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert animegan_main(["--help"]) == 0
    help_text = capsys.readouterr().out
    for command in ("stylize", "styles", "weights", "bench", "serve", "api", "worker", "loadtest"):
        assert f"  {command}" in help_text
    assert animegan_main(["--version"]) == 0
    assert animegan_main([]) == 2
    assert animegan_main(["paint"]) == 2
    assert "invalid choice: 'paint'" in capsys.readouterr().err


def test_dispatcher_forwards_options_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert animegan_main(["stylize", "--help"]) == 0
    assert "usage: animegan stylize" in capsys.readouterr().out
    assert animegan_main(["weights", "fetch", "--help"]) == 0
    assert "usage: animegan weights fetch" in capsys.readouterr().out


def test_python_dash_m_animegan_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "animegan", "weights", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "usage: animegan weights" in result.stdout


def test_stylized_output_has_no_input_metadata(
    tmp_path: Path, hayao_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x0112] = 6  # stored sideways: the output comes out upright
    source = tmp_path / "sideways.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 100, 50)).save(buffer, "JPEG", exif=exif.tobytes())
    source.write_bytes(buffer.getvalue())
    out = tmp_path / "out"
    code = inference_main(
        ["stylize", str(source), "--out", str(out), "--weights", str(hayao_weights), "--format", "jpeg"]
    )
    assert code == 0, capsys.readouterr().err
    data = (out / "sideways.jpg").read_bytes()
    assert b"CameraMaker" not in data
    with Image.open(out / "sideways.jpg") as result:
        assert result.size == (32, 48)
        assert len(result.getexif()) == 0
