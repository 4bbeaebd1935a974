"""Portrait mode through the real gateway: the square it queues, what it refuses, how it deduplicates.

The round trip runs on the session's real worker and is compared with the engine run here on the
crop made independently (Pillow: EXIF transpose, then the box resampled to 512x512).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from animegan.client import ApiError, Client
from inference.pipeline import Stylizer

WEIGHTS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "weights"
ApiFactory = Callable[..., str]
Photo = Callable[[], bytes]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def rotated_photo(samples_dir: Path) -> bytes:
    """A 300x200 JPEG stored sideways with EXIF orientation 6: upright it is 200x300."""
    with Image.open(samples_dir / "chelsea.jpg") as img:
        stored = img.convert("RGB").resize((300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def test_portrait_output_is_512_square_and_matches_stylizing_the_crop_directly(
    start_api: ApiFactory, worker_redis_url: str, samples_dir: Path
) -> None:
    base = start_api(redis_url=worker_redis_url)
    data = rotated_photo(samples_dir)
    with Client(base) as client:
        job = client.submit(data, mode="portrait", crop=(20, 60, 180, 180))
        assert job.raw["input"] == {"width": 512, "height": 512, "original_width": 200, "original_height": 300}
        done = client.wait(job, timeout=180)
        assert done.succeeded, done
        served = np.asarray(Image.open(io.BytesIO(client.result(done))).convert("RGB"))
    assert served.shape == (512, 512, 3)

    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    crop = upright.resize((512, 512), Image.Resampling.LANCZOS, box=(20, 60, 200, 240))
    direct = Stylizer.load("hayao", weights_dir=WEIGHTS_DIR, threads=1, precision="auto").stylize(crop)
    assert psnr(served, np.asarray(direct)) >= 40


@pytest.mark.parametrize(
    ("fields", "field", "complaint"),
    [
        ({"mode": "xyz"}, "mode", "Unknown mode 'xyz'"),
        ({"mode": "portrait", "crop": "0,0,100"}, "crop", "not four whole numbers"),
        ({"mode": "portrait", "crop": "0.5,0,100,100"}, "crop", "not four whole numbers"),
        ({"mode": "portrait", "crop": "a,b,c,d"}, "crop", "not four whole numbers"),
        ({"mode": "portrait", "crop": "0,0,0,0"}, "crop", "no area"),
        ({"mode": "portrait", "crop": "0,0,100,90"}, "crop", "needs a square"),
        ({"mode": "portrait", "crop": "100,0,129,129"}, "crop", "reaches past the 192x128 image"),
        ({"mode": "portrait", "crop": "0,1,128,128"}, "crop", "reaches past the 192x128 image"),
        ({"crop": "0,0,64,64"}, "crop", "portrait mode only"),
        ({"mode": "scene", "crop": "0,0,64,64"}, "crop", "portrait mode only"),
    ],
)
def test_bad_modes_and_crop_boxes_are_validation_errors_naming_the_field(
    start_api: ApiFactory, redis_url: str, photo: Photo, fields: dict[str, str], field: str, complaint: str
) -> None:
    base = start_api(redis_url=redis_url)
    with Client(base) as client, pytest.raises(ApiError) as refused:
        client.submit(photo(), mode=fields.get("mode"), crop=fields.get("crop"))  # photo(): 192x128
    problem = refused.value.problem
    assert refused.value.status == 422
    assert problem["type"] == "/problems/validation-error"
    assert problem["errors"][0]["loc"] == ["body", field]
    assert complaint in problem["detail"]


def test_mode_and_crop_are_part_of_the_request_identity(start_api: ApiFactory, redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=redis_url)
    image = photo()
    with Client(base) as client:
        scene = client.submit(image)
        centre = client.submit(image, mode="portrait")
        boxed = client.submit(image, mode="portrait", crop="0,0,128,128")
        again = client.submit(image, mode="PORTRAIT", crop=" 0, 0,128,128")
        assert len({scene.id, centre.id, boxed.id}) == 3
        assert [scene.deduplicated, centre.deduplicated, boxed.deduplicated] == [False, False, False]
        assert (again.id, again.deduplicated) == (boxed.id, True)
        assert scene.raw["input"]["width"] == 128  # the test gateway's max side
        assert centre.raw["input"]["width"] == boxed.raw["input"]["width"] == 512
