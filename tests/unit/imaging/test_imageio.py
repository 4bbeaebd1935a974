"""imaging.decode: what uploads are accepted, how they are normalised, and how results are encoded."""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin

from imaging.convert import to_rgb
from imaging.decode import decode_image, decode_memory, fit_within, resample_in_bands
from imaging.encode import encode_image, image_digest
from imaging.errors import ImageTooLargeError, InvalidImageError, UnsupportedFormatError
from imaging.formats import ALLOWED_FORMATS, CONTENT_TYPES, OUTPUT_FORMATS, declared, sniff_format
from imaging.heif import register_decoder

register_decoder()  # the tests write HEIF files with pillow-heif's encoder

WHITE = (255, 255, 255)


def save(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def crafted_png(width: int, height: int, *, before_idat: bytes = b"", after_idat: bytes = b"") -> bytes:
    """An 8-bit RGB PNG whose IHDR declares width x height, with a tiny IDAT (one blank row at most)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * min(width, 64)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + before_idat
        + png_chunk(b"IDAT", idat)
        + after_idat
        + png_chunk(b"IEND", b"")
    )


def quadrants(width: int = 64, height: int = 32) -> Image.Image:
    """Upright test picture: red top-left, green top-right, blue bottom-left, white bottom-right."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    image.paste((255, 0, 0), (0, 0, half_w, half_h))
    image.paste((0, 255, 0), (half_w, 0, width, half_h))
    image.paste((0, 0, 255), (0, half_h, half_w, height))
    image.paste(WHITE, (half_w, half_h, width, height))
    return image


def noise(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixels(image: Image.Image) -> list[tuple[int, ...]]:
    """Pixels in row order, as tuples of channel values."""
    array = np.asarray(image)
    return [tuple(int(v) for v in pixel) for pixel in array.reshape(-1, array.shape[-1] if array.ndim == 3 else 1)]


def assert_close(actual: object, expected: tuple[int, ...], tolerance: int = 40) -> None:
    assert isinstance(actual, tuple)
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), (actual, expected)


# --- format sniffing and the allow-list ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_sniff_recognises_each_allowed_format(fmt: str) -> None:
    assert sniff_format(save(Image.new("RGB", (8, 8)), fmt)) == fmt


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("gif", save(Image.new("RGB", (8, 8)), "GIF")),
        ("tiff", save(Image.new("RGB", (8, 8)), "TIFF")),
        ("bmp", save(Image.new("RGB", (8, 8)), "BMP")),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>'),
        ("svg-xml", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>'),
        ("html", b"\xef\xbb\xbf  <!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"),
        ("text", b"hello, this is not an image at all"),
    ],
)
def test_formats_outside_the_allow_list_are_unsupported(name: str, data: bytes) -> None:
    assert sniff_format(data) is None
    with pytest.raises(UnsupportedFormatError, match="JPEG, PNG, WebP or HEIC"):
        decode_image(data)


def test_unsupported_message_names_the_detected_format() -> None:
    with pytest.raises(UnsupportedFormatError, match=r"^GIF data"):
        decode_image(save(Image.new("RGB", (8, 8)), "GIF"))


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + b"<html><script>alert(1)</script></html>",  # PNG magic, then junk
        b"\xff\xd8\xff" + b"<?php system($_GET['c']); ?>",  # JPEG magic, then junk
        b"RIFF\x00\x01\x00\x00WEBPJUNKJUNKJUNK",  # WebP magic, unknown chunk
        b"GIF89a" + save(Image.new("RGB", (8, 8)), "PNG"),  # a PNG hidden behind a GIF header
    ],
)
def test_polyglots_are_unsupported_even_when_they_start_like_an_image(data: bytes) -> None:
    with pytest.raises(UnsupportedFormatError):
        decode_image(data)


def test_zero_byte_input_is_invalid() -> None:
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"")


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_truncated_data_of_each_format_is_invalid(fmt: str) -> None:
    # Noise does not compress, so every cut below removes pixel data.
    data = save(noise(32, 64), fmt)
    for cut in (1, 3, 10, 16, 24, 40, len(data) // 3, len(data) // 2, len(data) - 30):
        with pytest.raises(InvalidImageError):
            decode_image(data[:cut])


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_no_cut_point_raises_anything_but_our_errors(fmt: str) -> None:
    data = save(quadrants(24, 16), fmt)
    for cut in range(1, len(data)):
        with contextlib.suppress(InvalidImageError, UnsupportedFormatError):
            decode_image(data[:cut])


def test_corrupt_png_data_is_invalid() -> None:
    data = bytearray(save(quadrants(), "PNG"))
    data[60:80] = b"\x00" * 20  # inside IDAT: CRC and zlib stream broken
    with pytest.raises(InvalidImageError, match="PNG image could not be decoded"):
        decode_image(bytes(data))


# --- pixel limits and bombs ---------------------------------------------------------------------


def test_bomb_header_is_refused_before_decoding() -> None:
    bomb = crafted_png(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(ImageTooLargeError):
        decode_image(bomb)


def test_header_over_our_pixel_limit_is_refused_with_its_size() -> None:
    with pytest.raises(ImageTooLargeError, match="10000x5000"):
        decode_image(crafted_png(10_000, 5_000), max_pixels=40_000_000)


def test_pixel_limit_is_a_parameter() -> None:
    data = save(Image.new("RGB", (100, 100)), "PNG")
    assert decode_image(data, max_pixels=10_000).width == 100
    with pytest.raises(ImageTooLargeError, match=r"limit is 0\.0 megapixels"):
        decode_image(data, max_pixels=9_999)


def test_jpeg_header_bomb_is_refused() -> None:
    data = bytearray(save(Image.new("RGB", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)  # height, width in SOF0
    with pytest.raises(ImageTooLargeError):
        decode_image(bytes(data))


def test_pillow_bomb_warning_becomes_too_large() -> None:
    # Over Image.MAX_IMAGE_PIXELS (89 Mpx) but under twice it: Pillow warns instead of raising.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLargeError):
            decode_image(crafted_png(10_000, 10_000), max_pixels=10**12)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (0, 0)])
def test_zero_dimensions_are_invalid(width: int, height: int) -> None:
    with pytest.raises(InvalidImageError):
        decode_image(crafted_png(width, height))


@pytest.mark.parametrize("where", ["before_idat", "after_idat"])
def test_png_text_chunk_bomb_is_invalid(where: str) -> None:
    bomb = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (PngImagePlugin.MAX_TEXT_CHUNK + 1)))
    data = crafted_png(4, 1, **{where: bomb})
    with pytest.raises(InvalidImageError, match="text metadata is too large"):
        decode_image(data)


def test_png_text_memory_limit_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 1_000)
    text = png_chunk(b"tEXt", b"Comment\x00" + b"x" * 600)
    with pytest.raises(InvalidImageError, match="text metadata is too large"):
        decode_image(crafted_png(4, 1, before_idat=text + text))


# --- orientation --------------------------------------------------------------------------------

# For each EXIF orientation: how to store an upright picture so that a viewer shows it upright.
STORE_FOR_ORIENTATION: dict[int, Callable[[Image.Image], Image.Image]] = {
    1: lambda im: im,
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
}


def jpeg_with_orientation(upright: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(STORE_FOR_ORIENTATION[orientation](upright), "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(orientation: int) -> None:
    upright = quadrants(64, 32)
    decoded = decode_image(jpeg_with_orientation(upright, orientation))
    image = decoded.image
    assert image.size == (64, 32)
    assert (decoded.original_width, decoded.original_height) == (64, 32)
    assert_close(image.getpixel((8, 8)), (255, 0, 0))
    assert_close(image.getpixel((56, 8)), (0, 255, 0))
    assert_close(image.getpixel((8, 24)), (0, 0, 255))
    assert_close(image.getpixel((56, 24)), WHITE)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(orientation: int) -> None:
    data = jpeg_with_orientation(quadrants(40, 24), orientation)
    with Image.open(io.BytesIO(data)) as reference:
        expected = ImageOps.exif_transpose(reference).convert("RGB")
    assert decode_image(data).image.tobytes() == expected.tobytes()


@pytest.mark.parametrize("orientation", [6, 8])
def test_downscale_bound_applies_to_the_oriented_size(orientation: int) -> None:
    decoded = decode_image(jpeg_with_orientation(quadrants(200, 100), orientation), max_side=50)
    assert decoded.image.size == (50, 25)
    assert (decoded.original_width, decoded.original_height) == (200, 100)
    assert_close(decoded.image.getpixel((5, 5)), (255, 0, 0))


# --- modes --------------------------------------------------------------------------------------


def decode_pixels(image: Image.Image, fmt: str = "PNG", **params: Any) -> list[tuple[int, ...]]:
    decoded = decode_image(save(image, fmt, **params))
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == image.size
    return pixels(decoded.image)


def test_grey_l_becomes_rgb() -> None:
    assert decode_pixels(Image.new("L", (3, 2), 100)) == [(100, 100, 100)] * 6


def test_bilevel_1_becomes_black_and_white() -> None:
    image = Image.new("1", (2, 1))
    image.putpixel((1, 0), 1)
    assert decode_pixels(image) == [(0, 0, 0), WHITE]


def test_la_alpha_is_flattened_on_white() -> None:
    image = Image.new("LA", (2, 1), (100, 255))
    image.putpixel((1, 0), (100, 0))
    assert decode_pixels(image) == [(100, 100, 100), WHITE]


def test_rgba_alpha_is_flattened_on_white() -> None:
    image = Image.new("RGBA", (3, 1), (255, 0, 0, 255))
    image.putpixel((1, 0), (255, 0, 0, 0))
    image.putpixel((2, 0), (255, 0, 0, 128))
    opaque, clear, half = decode_pixels(image)
    assert opaque == (255, 0, 0)
    assert clear == WHITE
    assert_close(half, (255, 127, 127), tolerance=2)


def test_rgba_webp_is_flattened_on_white() -> None:
    image = Image.new("RGBA", (16, 16), (0, 0, 255, 0))
    assert set(decode_pixels(image, "WEBP", lossless=True)) == {WHITE}


def test_palette_becomes_rgb() -> None:
    image = Image.new("RGB", (2, 1), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert decode_pixels(image) == [(10, 200, 30)] * 2


def test_palette_transparency_becomes_white() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    assert decode_pixels(image, transparency=1) == [(0, 0, 255), WHITE]


def test_rgb_colour_key_transparency_becomes_white() -> None:
    image = Image.new("RGB", (2, 1), (1, 2, 3))
    image.putpixel((1, 0), (9, 9, 9))
    assert decode_pixels(image, transparency=(1, 2, 3)) == [WHITE, (9, 9, 9)]


def test_sixteen_bit_png_is_scaled_to_eight_bits() -> None:
    image = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    assert image.mode == "I;16"
    assert decode_pixels(image) == [(0, 0, 0), (128, 128, 128), WHITE]


def test_sixteen_bit_png_transparency_becomes_white() -> None:
    image = Image.fromarray(np.array([[0, 1000, 30000, 65535]], dtype=np.uint16))
    assert decode_pixels(image, transparency=30000) == [(0, 0, 0), (4, 4, 4), WHITE, WHITE]


def test_cmyk_jpeg_becomes_rgb() -> None:
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    pixels = decode_pixels(image, "JPEG", quality=95)
    assert_close(pixels[0], (255, 0, 0), tolerance=8)


def test_to_rgb_reads_32_bit_integers_as_16_bit_when_they_exceed_8_bits() -> None:
    deep = Image.fromarray(np.array([[0, 257, 65535]], dtype=np.int32))
    assert deep.mode == "I"
    assert pixels(to_rgb(deep)) == [(0, 0, 0), (1, 1, 1), WHITE]
    shallow = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))
    assert pixels(to_rgb(shallow)) == [(0, 0, 0), (100, 100, 100), WHITE]


def test_to_rgb_reads_floats_as_unit_range_or_eight_bit() -> None:
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32))
    assert unit.mode == "F"
    assert pixels(to_rgb(unit)) == [(0, 0, 0), (128, 128, 128), WHITE, (0, 0, 0)]
    wide = Image.fromarray(np.array([[-5.0, 100.0, 300.0]], dtype=np.float32))
    assert pixels(to_rgb(wide)) == [(0, 0, 0), (100, 100, 100), WHITE]


def test_to_rgb_returns_rgb_images_as_they_are() -> None:
    image = Image.new("RGB", (2, 2))
    assert to_rgb(image) is image


# --- sizes and downscaling ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((1, 1), 1024, (1, 1)),
        ((3, 1000), 100, (1, 100)),
        ((1000, 3), 100, (100, 1)),
        ((333, 777), 256, (110, 256)),
        ((777, 333), 256, (256, 110)),
        ((1024, 1024), 1024, (1024, 1024)),
        ((2000, 1000), 1000, (1000, 500)),
    ],
)
def test_fit_within(size: tuple[int, int], max_side: int, expected: tuple[int, int]) -> None:
    assert fit_within(*size, max_side) == expected


@pytest.mark.parametrize(("size", "max_side"), [((1, 1), 1024), ((3, 1000), 100), ((333, 777), 256), ((31, 17), 8)])
def test_decode_small_and_odd_sizes(size: tuple[int, int], max_side: int) -> None:
    decoded = decode_image(save(Image.new("RGB", size, (20, 40, 60)), "PNG"), max_side=max_side)
    assert decoded.image.size == fit_within(*size, max_side)
    assert max(decoded.width, decoded.height) <= max_side
    assert (decoded.original_width, decoded.original_height) == size


def test_downscale_is_lanczos_to_exactly_max_side() -> None:
    source = noise(200, 400)
    decoded = decode_image(save(source, "PNG"), max_side=100)
    assert decoded.image.size == (100, 50)
    assert decoded.image.tobytes() == source.resize((100, 50), Image.Resampling.LANCZOS).tobytes()


def test_small_images_are_never_upscaled() -> None:
    source = noise(30, 50, seed=1)
    decoded = decode_image(save(source, "PNG"), max_side=1024)
    assert decoded.image.size == (50, 30)
    assert decoded.image.tobytes() == source.tobytes()


class DraftSpy:
    """Records what JpegImageFile.draft was asked and did, around the real implementation."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[tuple[int, int], tuple[int, int]]] = []
        original = JpegImagePlugin.JpegImageFile.draft
        spy = self

        def draft(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> Any:
            result = original(self, mode, size)
            assert size is not None
            spy.calls.append((size, self.size))
            return result

        monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)


def test_big_jpeg_is_decoded_in_draft_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = DraftSpy(monkeypatch)
    source = quadrants(2000, 1500)
    decoded = decode_image(save(source, "JPEG", quality=90), max_side=256)
    assert spy.calls == [((256, 192), (500, 375))]  # libjpeg decoded at 1/4 scale, then LANCZOS
    assert decoded.image.size == (256, 192)
    reference = source.resize((256, 192), Image.Resampling.LANCZOS)
    difference = np.abs(np.asarray(decoded.image, dtype=np.int16) - np.asarray(reference, dtype=np.int16))
    assert difference.mean() < 3


def test_jpeg_under_twice_the_target_is_not_drafted(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = DraftSpy(monkeypatch)
    decoded = decode_image(save(quadrants(400, 300), "JPEG"), max_side=256)
    assert spy.calls == []
    assert decoded.image.size == (256, 192)


# --- encoding -----------------------------------------------------------------------------------


def image_with_metadata() -> Image.Image:
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x0112] = 1
    data = save(quadrants(32, 16), "JPEG", exif=exif.tobytes(), icc_profile=b"\x00" * 128, comment=b"secret")
    image = Image.open(io.BytesIO(data))
    image.load()
    assert "exif" in image.info
    assert "icc_profile" in image.info
    return image


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_encode_carries_no_input_metadata(fmt: str) -> None:
    source = image_with_metadata()
    data = encode_image(source, fmt)
    with Image.open(io.BytesIO(data)) as encoded:
        encoded.load()
        assert encoded.format == fmt.upper()
        assert encoded.size == (32, 16)
        assert not {"exif", "icc_profile", "xmp", "comment"} & set(encoded.info)
        assert len(encoded.getexif()) == 0
    assert b"CameraMaker" not in data
    assert b"secret" not in data
    assert "exif" in source.info  # the caller's image is left alone


def test_decoded_images_carry_no_metadata() -> None:
    decoded = decode_image(save(image_with_metadata(), "JPEG", exif=image_with_metadata().info["exif"]))
    assert decoded.image.info == {}
    assert b"CameraMaker" not in encode_image(decoded.image, "jpeg")


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_encode_round_trips_size_and_content_type(fmt: str) -> None:
    data = encode_image(quadrants(40, 20), fmt, quality=90)
    assert CONTENT_TYPES[fmt] == f"image/{fmt}"
    with Image.open(io.BytesIO(data)) as encoded:
        assert encoded.format == fmt.upper()
        assert encoded.size == (40, 20)
    if fmt == "avif":  # a result format only: an AVIF upload is refused by name
        with pytest.raises(UnsupportedFormatError, match=r"^AVIF data"):
            decode_image(data)
    else:
        assert sniff_format(data) == fmt.upper()
        assert decode_image(data).image.size == (40, 20)


def test_png_encoding_is_lossless_and_converts_modes() -> None:
    source = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    with Image.open(io.BytesIO(encode_image(source, "PNG"))) as encoded:
        assert encoded.mode == "RGB"
        assert set(pixels(encoded)) == {WHITE}


def test_encode_refuses_unknown_formats_and_qualities() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        encode_image(quadrants(), "gif")
    with pytest.raises(ValueError, match="quality"):
        encode_image(quadrants(), "jpeg", quality=0)


def test_decode_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="positive"):
        decode_image(save(quadrants(), "PNG"), max_side=0)


# --- digest -------------------------------------------------------------------------------------


def test_image_digest_depends_on_pixels_not_on_the_file() -> None:
    picture = quadrants(16, 8)
    from_png = decode_image(save(picture, "PNG")).image
    from_webp = decode_image(save(picture, "WEBP", lossless=True)).image
    assert image_digest(from_png) == image_digest(from_webp)
    assert image_digest(from_png) != image_digest(quadrants(8, 16))
    assert image_digest(from_png) != image_digest(from_png.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert len(image_digest(from_png)) == 64


# -- decoding in bands, and what a decode costs ----------------------------------------------------


def _noise(mode: str, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(5)
    rgba = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA")
    return rgba if mode == "RGBA" else rgba.convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "RGB", "L", "CMYK", "I;16"])
def test_banded_resample_equals_converting_the_whole_image_then_resizing(mode: str) -> None:
    image = _noise(mode, (1800, 1300))  # several bands of rows
    region = (37.5, 51.0, 1700.25, 1250.0)
    expected = to_rgb(image).resize((500, 360), Image.Resampling.LANCZOS, box=region)
    banded = resample_in_bands(image, (500, 360), region)
    got = banded if banded.mode == "RGB" else banded.convert("RGB")
    assert got.size == (500, 360)
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_banded_resample_of_a_palette_image_with_transparency_flattens_on_white() -> None:
    image = _noise("RGB", (900, 700)).quantize(32)
    image.info["transparency"] = 3
    expected = to_rgb(image).resize((300, 233), Image.Resampling.LANCZOS)
    got = resample_in_bands(image, (300, 233), (0.0, 0.0, 900.0, 700.0))
    assert np.array_equal(np.asarray(got.convert("RGB")), np.asarray(expected))


@pytest.mark.parametrize(
    ("mode", "fmt", "params", "declared_as"),
    [
        ("LA", "PNG", {}, ("PNG", 4, 8)),
        ("I;16", "PNG", {}, ("PNG", 0, 16)),
        ("RGB", "JPEG", {"progressive": True}, ("JPEG", 3, 8)),
        ("CMYK", "JPEG", {}, ("JPEG", 4, 8)),
        ("RGBA", "WEBP", {"lossless": True}, ("WEBP", 0, 8)),
        ("RGB", "WEBP", {"quality": 50}, ("WEBP", 0, 8)),
        ("RGB", "WEBP", {"exif": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00"}, ("WEBP", 0, 8)),
    ],
)
def test_declared_reads_the_size_from_the_header(
    mode: str, fmt: str, params: dict[str, object], declared_as: tuple[str, int, int]
) -> None:
    buffer = io.BytesIO()
    Image.new(mode, (321, 123)).save(buffer, fmt, **params)
    header = declared(buffer.getvalue())
    assert header is not None
    assert (header.width, header.height) == (321, 123)
    assert (header.format, header.color_type, header.bit_depth) == declared_as


def test_declared_is_none_for_a_header_cut_short() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "JPEG")
    assert declared(buffer.getvalue()[:40]) is None
    assert declared(b"not an image at all") is None


def test_decode_memory_weighs_formats_by_what_pillow_holds() -> None:
    def cost(mode: str, fmt: str, **params: object) -> int:
        buffer = io.BytesIO()
        Image.new(mode, (6320, 6320)).save(buffer, fmt, **params)
        return decode_memory(buffer.getvalue(), max_side=1024)

    pixels = 6320 * 6320
    webp, la_png, grey_png, jpeg = (
        cost("RGBA", "WEBP", lossless=True),
        cost("LA", "PNG"),
        cost("L", "PNG"),
        cost("RGB", "JPEG"),
    )
    assert webp > 16 * pixels  # Pillow's WebP decoder: 16 bytes a pixel
    assert 4 * pixels < la_png < 4 * pixels + 64 * 2**20  # LA: 4 bytes a pixel, plus the strip and the bands
    assert pixels < grey_png < la_png
    assert jpeg < grey_png  # RGB at 4 bytes a pixel, but decoded at 1/4 scale (libjpeg draft)
