"""Portrait framing: crop boxes as text, the centre square, and the square decode_portrait returns."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from imaging.crops import PORTRAIT_SIDE, CropBox, centre_square, parse_crop
from imaging.decode import decode_portrait
from imaging.errors import CropError

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "samples"


def psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def encoded(image: Image.Image, fmt: str, orientation: int = 1, **params: object) -> bytes:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, fmt, exif=exif, **params)
    return buffer.getvalue()


def photo(width: int, height: int) -> Image.Image:
    with Image.open(SAMPLES / "chelsea.jpg") as img:
        return img.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)


def expected_square(upright: Image.Image, box: CropBox) -> Image.Image:
    region = (box.x, box.y, box.x + box.width, box.y + box.height)
    return upright.resize((PORTRAIT_SIDE, PORTRAIT_SIDE), Image.Resampling.LANCZOS, box=region)


@pytest.mark.parametrize(
    ("text", "box"),
    [("0,0,1,1", CropBox(0, 0, 1, 1)), (" 120, 40 ,600,600 ", CropBox(120, 40, 600, 600))],
)
def test_a_crop_box_is_four_whole_numbers(text: str, box: CropBox) -> None:
    assert parse_crop(text) == box
    assert str(box) == text.replace(" ", "")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("1,2,3", "four whole numbers"),
        ("1,2,3,4,5", "four whole numbers"),
        ("-1,0,10,10", "four whole numbers"),
        ("1.5,0,10,10", "four whole numbers"),
        ("a,b,c,d", "four whole numbers"),
        ("\u0661,0,10,10", "four whole numbers"),  # an Arabic-Indic digit is not ASCII
        ("0,0,0,0", "no area"),
        ("0,0,10,12", "square"),
        ("0,0,99999999,99999999", "beyond any image"),
    ],
)
def test_malformed_boxes_are_refused_with_the_reason(text: str, complaint: str) -> None:
    with pytest.raises(CropError, match=complaint):
        parse_crop(text)


@pytest.mark.parametrize(
    ("size", "box"),
    [((640, 480), CropBox(80, 0, 480, 480)), ((301, 500), CropBox(0, 99, 301, 301)), ((7, 7), CropBox(0, 0, 7, 7))],
)
def test_the_centre_square_is_face2paints(size: tuple[int, int], box: CropBox) -> None:
    assert centre_square(*size) == box


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_box_is_cut_from_the_upright_image_for_every_exif_orientation(orientation: int) -> None:
    stored = photo(300, 200)
    data = encoded(stored, "PNG", orientation)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    box = CropBox(10, 20, 150, 150)
    decoded = decode_portrait(data, crop=box)
    assert decoded.image.size == (PORTRAIT_SIDE, PORTRAIT_SIDE)
    assert (decoded.original_width, decoded.original_height) == upright.size
    assert psnr(decoded.image, expected_square(upright, box)) > 45


def test_without_a_box_the_centre_square_is_taken() -> None:
    image = photo(900, 600)
    decoded = decode_portrait(encoded(image, "PNG"))
    assert psnr(decoded.image, expected_square(image, CropBox(150, 0, 600, 600))) > 45


def test_a_square_image_of_the_portrait_side_is_kept_as_it_is() -> None:
    image = photo(PORTRAIT_SIDE, PORTRAIT_SIDE)
    decoded = decode_portrait(encoded(image, "PNG"))
    assert decoded.image.tobytes() == image.tobytes()


def test_a_big_jpeg_is_decoded_at_reduced_scale_and_still_matches() -> None:
    image = photo(4000, 3000)
    data = encoded(image, "JPEG", 6, quality=95)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    box = CropBox(500, 1000, 2000, 2000)
    decoded = decode_portrait(data, crop=box)
    assert decoded.image.size == (PORTRAIT_SIDE, PORTRAIT_SIDE)
    # libjpeg's 1/2-scale decode differs from a full decode by a little, never by a misplaced box.
    assert psnr(decoded.image, expected_square(upright, box)) > 35


@pytest.mark.parametrize("box", [CropBox(0, 0, 201, 201), CropBox(150, 0, 151, 151), CropBox(0, 50, 151, 151)])
def test_a_box_reaching_past_the_upright_image_is_refused(box: CropBox) -> None:
    data = encoded(photo(200, 300), "PNG", 6)  # stored 200x300, upright 300x200
    with pytest.raises(CropError, match="300x200"):
        decode_portrait(data, crop=box)


def test_a_box_inside_the_upright_image_but_not_the_stored_one_is_accepted() -> None:
    data = encoded(photo(200, 300), "PNG", 6)
    assert decode_portrait(data, crop=CropBox(100, 0, 200, 200)).image.size == (PORTRAIT_SIDE, PORTRAIT_SIDE)
