"""Upload bodies made in memory: real photos resized to a scenario's sizes, generated photos, bad inputs."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from loadtest.images import BAD_CASES, Photos, bad_upload, encode_jpeg, png_header_only, synthetic_photo


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_synthetic_photo_is_deterministic_and_photo_like() -> None:
    first, again, other = synthetic_photo(1), synthetic_photo(1), synthetic_photo(2)
    assert first.mode == "RGB"
    assert first.size == (1600, 1200)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()
    # Not a flat card: colour varies across the picture and there is fine-grained noise.
    assert min(ImageStat.Stat(first).stddev) > 10
    assert len(first.getcolors(maxcolors=1 << 24) or []) > 10_000


@pytest.mark.parametrize("size", [(32, 32), (1080, 1920), (4000, 3000)])
def test_photos_from_a_folder_render_at_exactly_the_size_asked(samples_dir: Path, size: tuple[int, int]) -> None:
    photos = Photos(samples_dir)
    assert len(photos.pool) == len([p for p in samples_dir.iterdir() if p.suffix == ".jpg"])
    image = decode(photos.unique_jpeg(random.Random(0), *size))
    assert image.format == "JPEG"
    assert image.size == size


def test_without_a_folder_the_pool_is_generated() -> None:
    photos = Photos(None)
    assert len(photos.pool) == 4
    assert decode(photos.jpeg(0, 640, 480)).size == (640, 480)


def test_unique_uploads_differ_and_duplicate_uploads_do_not(samples_dir: Path) -> None:
    photos, rng = Photos(samples_dir), random.Random(7)
    uniques = {photos.unique_jpeg(rng, 256, 256) for _ in range(20)}
    assert len(uniques) == 20
    assert photos.jpeg(1, 512, 384) == photos.jpeg(1, 512, 384)


def test_stamped_uploads_still_differ_after_the_service_downscale(samples_dir: Path) -> None:
    photos, rng = Photos(samples_dir), random.Random(3)
    shrunk = set()
    for _ in range(10):
        image = decode(photos.unique_jpeg(rng, 1080, 1920))
        image.thumbnail((256, 256), Image.Resampling.LANCZOS)  # what the gateway does before its dedup hash
        shrunk.add(image.tobytes())
    assert len(shrunk) == 10


def test_big_photos_fit_the_upload_limit(samples_dir: Path) -> None:
    noisy = synthetic_photo(5, (4000, 3000))
    assert len(encode_jpeg(noisy)) <= 5 * 1024 * 1024 - 64 * 1024
    assert len(Photos(samples_dir, upload_limit=1024 * 1024).jpeg(0, 4000, 3000)) <= 1024 * 1024


def test_png_header_only_declares_a_pixel_bomb() -> None:
    data = png_header_only(30_000, 30_000)
    assert len(data) < 200
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))


def test_bad_uploads_cover_every_case() -> None:
    photo = encode_jpeg(synthetic_photo(0, (320, 240)))
    cases = {case: bad_upload(case, photo, {"style": "hayao"}, upload_limit=64 * 1024) for case in BAD_CASES}
    assert cases["truncated"][0] is not None
    assert len(cases["truncated"][0][1]) == len(photo) // 2
    assert cases["wrong_type"][0] is not None
    assert cases["wrong_type"][0][1].startswith(b"GIF89a")
    assert cases["oversize"][0] is not None
    assert len(cases["oversize"][0][1]) > 64 * 1024
    assert cases["empty"][0] == ("photo.jpg", b"", "image/jpeg")
    assert cases["unknown_style"][1]["style"] == "no-such-style"
    assert cases["unknown_format"][1]["format"] == "bmp"
    assert cases["no_file"][0] is None
    with pytest.raises(ValueError, match="unknown bad-input case"):
        bad_upload("nonsense", photo, {})
