"""`animegan submit` on folders of photos, against the real gateway and the session's real worker."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from animegan.cli import main
from imaging.decode import decode_image

ApiFactory = Callable[..., str]
Photo = Callable[[], bytes]


def folder_of_photos(folder: Path, photo: Photo, names: list[str]) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    written = {}
    for name in names:
        data = photo()
        (folder / name).write_bytes(data)
        written[name] = data
    return written


def test_a_folder_of_three_photos_gives_three_results_and_exit_0(
    start_api: ApiFactory, worker_redis_url: str, photo: Photo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = start_api(redis_url=worker_redis_url)
    photos = folder_of_photos(tmp_path / "in", photo, ["a.jpg", "b.jpg", "c.jpeg"])
    out = tmp_path / "out"

    code = main(["submit", str(tmp_path / "in"), "--url", base, "--out", str(out), "--format", "jpeg"])

    err = capsys.readouterr().err
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a-hayao.jpg", "b-hayao.jpg", "c-hayao.jpg"]
    for name, data in photos.items():
        with Image.open(out / f"{Path(name).stem}-hayao.jpg") as result:
            assert result.format == "JPEG"
            assert result.size == decode_image(data, max_side=128).image.size
    assert "3 written" in err
    assert "0 failed" in err


def test_a_file_that_is_not_an_image_fails_alone_and_exits_1(
    start_api: ApiFactory, worker_redis_url: str, photo: Photo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = start_api(redis_url=worker_redis_url)
    folder_of_photos(tmp_path / "in", photo, ["a.jpg", "c.jpg", "d.jpg"])
    (tmp_path / "in" / "b.png").write_bytes(b"not an image, whatever its name says")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "out"

    args = ["submit", str(tmp_path / "in"), str(missing), "--url", base, "--out", str(out), "--concurrency", "2"]
    code = main(args)

    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a-hayao.png", "c-hayao.png", "d-hayao.png"]
    for result in out.iterdir():
        assert Image.open(io.BytesIO(result.read_bytes())).format == "PNG"
    assert f"error: {tmp_path / 'in' / 'b.png'}: 415 Unsupported media type" in err
    assert f"error: {missing}: no such file or folder" in err
    assert "3 written" in err
    assert "2 failed" in err


def test_portrait_submissions_come_back_512_square(
    start_api: ApiFactory, worker_redis_url: str, photo: Photo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = start_api(redis_url=worker_redis_url)
    folder_of_photos(tmp_path / "in", photo, ["face.jpg"])
    out = tmp_path / "out"

    code = main(["submit", str(tmp_path / "in" / "face.jpg"), "--url", base, "--out", str(out), "--portrait"])

    assert code == 0, capsys.readouterr().err
    with Image.open(out / "face-hayao.png") as result:
        assert result.size == (512, 512)
