"""Fuzzing the upload validation path (``imaging.decode``) with hypothesis, bounded and derandomized.

Whatever the bytes, ``sniff_format`` answers an allowed format or None and ``decode_image`` either
returns an upright RGB image within the size limits or raises one of the image errors (which
the gateway maps to 4xx problems): never another exception, never an image over the limits.
Inputs: arbitrary bytes, bytes behind a real signature, and mutations (truncation, bit flips,
insertions, overwrites) of real JPEG, PNG and WebP files in every mode the gateway accepts.
"""

from __future__ import annotations

import io
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from imaging.decode import decode_image
from imaging.errors import ImageError
from imaging.formats import ALLOWED_FORMATS, sniff_format

# Pillow warns (it does not raise) about corrupt EXIF blocks and reads on; the suite turns warnings
# into errors, so this one is let through as production sees it. Decompression-bomb warnings stay errors.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")

MAX_SIDE = 64
MAX_PIXELS = 1_000_000
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SIGNATURES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    b"\xff\xd8\xff\xe0",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\xff\xff\xff\xffWEBPVP8L",
)


@cache
def seeds() -> tuple[bytes, ...]:
    """Small real files: every accepted format, several modes, EXIF orientation, transparency."""
    base = Image.linear_gradient("L").resize((40, 30))
    rgb = Image.merge("RGB", (base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), base.rotate(90, expand=False)))
    out = []
    exif = Image.Exif()
    exif[0x0112] = 6
    for image, fmt, params in (
        (rgb, "JPEG", {"quality": 80, "exif": exif}),
        (rgb.convert("CMYK"), "JPEG", {}),
        (base, "JPEG", {"progressive": True}),
        (rgb, "PNG", {}),
        (rgb.quantize(8), "PNG", {"transparency": 0}),
        (base.convert("I;16"), "PNG", {}),
        (rgb.convert("LA"), "PNG", {}),
        (rgb, "WEBP", {"quality": 60}),
        (rgb.convert("RGBA"), "WEBP", {"lossless": True}),
    ):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **params)
        out.append(buffer.getvalue())
    return tuple(out)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(("truncate", "flip", "insert", "overwrite", "delete")))
        if op == "truncate":
            del data[at:]
        elif op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        else:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def _check(data: bytes) -> None:
    assert sniff_format(data) in (*ALLOWED_FORMATS, None)
    try:
        decoded = decode_image(data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        message = str(exc)
        decoded = None
    if decoded is None:
        assert message  # a message for the user, never empty
        return
    assert decoded.image.mode == "RGB"
    assert 1 <= decoded.width <= MAX_SIDE
    assert 1 <= decoded.height <= MAX_SIDE
    assert decoded.original_width * decoded.original_height <= MAX_PIXELS
    assert decoded.format in ALLOWED_FORMATS


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_raise_an_image_error(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.sampled_from(SIGNATURES), st.binary(max_size=1024))
def test_bytes_behind_a_real_signature_decode_or_raise_an_image_error(head: bytes, tail: bytes) -> None:
    _check(head + tail)


@FUZZ
@given(mutated())
def test_mutated_real_images_decode_or_raise_an_image_error(data: bytes) -> None:
    _check(data)


@pytest.mark.parametrize("index", range(len(seeds())))
def test_every_seed_decodes(index: int) -> None:
    decoded = decode_image(seeds()[index], max_side=MAX_SIDE, max_pixels=MAX_PIXELS)
    assert decoded.image.mode == "RGB"
