"""HEIC/HEIF in (pillow-heif) and AVIF out (Pillow): sniffing, the header's size before decoding, the
decode memory weighed from it, orientation, and the AVIF quality setting."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest
from PIL import ExifTags, Image

from imaging.decode import HEIF_BYTES_PER_PIXEL, decode_image, decode_memory
from imaging.encode import encode_image
from imaging.errors import ImageTooLargeError, InvalidImageError, UnsupportedFormatError
from imaging.formats import declared, sniff_format
from imaging.heif import declared_size, is_heif, register_decoder

register_decoder()


def quadrants(width: int = 64, height: int = 32) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.paste((255, 0, 0), (0, 0, width // 2, height // 2))
    image.paste((0, 255, 0), (width // 2, 0, width, height // 2))
    image.paste((0, 0, 255), (0, height // 2, width // 2, height))
    image.paste((255, 255, 255), (width // 2, height // 2, width, height))
    return image


def heic(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "HEIF", quality=90, **params)
    return buffer.getvalue()


def with_ispe(data: bytes, width: int, height: int) -> bytes:
    """The same file with every ``ispe`` box declaring width x height (the coded pixels unchanged)."""
    out = bytearray(data)
    at = out.find(b"ispe")
    assert at > 0
    while at > 0:
        out[at + 8 : at + 16] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
        at = out.find(b"ispe", at + 4)
    return bytes(out)


def near(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 48) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def test_a_heic_is_sniffed_by_its_brand_and_its_size_read_from_the_header() -> None:
    data = heic(quadrants(64, 32))
    assert data[4:12] == b"ftypheic"
    assert sniff_format(data) == "HEIF"
    header = declared(data)
    assert header is not None
    # The coded size, which the encoder rounds up to whole coding blocks (a crop box trims it back):
    # an upper bound of the picture, which is what the limits need.
    assert header.format == "HEIF"
    assert 64 <= header.width < 64 + 64
    assert 32 <= header.height < 32 + 64


def test_a_generic_heif_brand_is_accepted_only_with_an_hevc_compatible_brand() -> None:
    data = heic(quadrants(64, 32))
    box = data[:24]  # size 24: 'ftyp', major 'heic', minor 0, compatible 'mif1' 'heic'
    generic = box[:8] + b"mif1" + box[12:]
    assert is_heif(generic + data[24:])
    no_hevc = box[:8] + b"mif1" + box[12:16] + b"mif1" + b"avif"
    assert not is_heif(no_hevc + data[24:])
    with pytest.raises(UnsupportedFormatError):
        decode_image(no_hevc + data[24:])


def test_a_heic_decodes_to_the_same_picture() -> None:
    decoded = decode_image(heic(quadrants(64, 32)))
    assert decoded.format == "HEIF"
    assert decoded.image.size == (64, 32)
    assert decoded.image.mode == "RGB"
    assert near(decoded.image.getpixel((8, 4)), (255, 0, 0))
    assert near(decoded.image.getpixel((56, 28)), (255, 255, 255))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_turned_heic_comes_out_upright(orientation: int) -> None:
    # What a phone writes: the stored pixels turned, the turn recorded (pillow-heif stores EXIF
    # orientation as the HEIF rotation box, which libheif applies).
    turn = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    stored = quadrants(64, 32).transpose(turn[orientation])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    decoded = decode_image(heic(stored, exif=exif.tobytes()))
    assert decoded.image.size == (64, 32)
    assert (decoded.original_width, decoded.original_height) == (64, 32)
    assert near(decoded.image.getpixel((8, 4)), (255, 0, 0))
    assert near(decoded.image.getpixel((56, 4)), (0, 255, 0))
    assert near(decoded.image.getpixel((8, 28)), (0, 0, 255))


def test_a_heic_declaring_huge_dimensions_is_refused_from_its_header_before_decoding() -> None:
    bomb = with_ispe(heic(quadrants(64, 32)), 50_000, 40_000)
    assert declared_size(bomb) == (50_000, 40_000)
    # The header's size (libheif would otherwise parse the file and fail its own way, later).
    with pytest.raises(ImageTooLargeError, match=r"50000x40000 pixels"):
        decode_image(bomb)
    assert decode_memory(bomb, max_side=1024) >= 50_000 * 40_000 * HEIF_BYTES_PER_PIXEL


def test_a_heic_whose_header_declares_no_size_is_invalid() -> None:
    data = heic(quadrants(64, 32)).replace(b"ispe", b"xxxx")
    with pytest.raises(InvalidImageError, match="declares no image size"):
        decode_image(data)


def test_the_decode_memory_weighed_from_a_heic_header_covers_the_measured_peak(tmp_path: object) -> None:
    source = Image.effect_noise((1512, 1008), 64).convert("RGB")
    data = heic(source)
    estimate = decode_memory(data, max_side=1024)
    script = textwrap.dedent(
        """
        import sys
        from imaging.decode import decode_image
        data = sys.stdin.buffer.read()
        def status(field):
            return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(field))
        base = status("VmRSS:")
        open("/proc/self/clear_refs", "w").write("5")
        decode_image(data, max_side=1024)
        print(status("VmHWM:") - base)
        """
    )
    peak = int(subprocess.run([sys.executable, "-c", script], input=data, capture_output=True, check=True).stdout)
    assert 0 < peak <= estimate, (peak, estimate)


def test_avif_results_follow_the_quality_setting() -> None:
    picture = Image.effect_noise((96, 64), 40).convert("RGB")
    low, high = encode_image(picture, "avif", quality=30), encode_image(picture, "avif", quality=90)
    assert low[4:12] == b"ftypavif"
    assert len(low) < len(high)
    with Image.open(io.BytesIO(high)) as image:
        assert image.format == "AVIF"
        assert image.size == (96, 64)


@pytest.mark.parametrize(
    ("data", "cut"),
    [
        (b"\x00", True),
        (b"\x00\x00\x00\x18ft", True),
        (b"\x00\x00\x00\x18ftypmif", True),
        (b"nope", False),
        (b"\x00\x00\x00\x18free", False),
        (b"\x00\x00\x00\x18ftypavif", False),
    ],
)
def test_only_a_prefix_of_a_heif_signature_counts_as_a_truncated_heif(data: bytes, cut: bool) -> None:
    from imaging.heif import is_cut_heif

    assert is_cut_heif(data) is cut
    with pytest.raises(InvalidImageError if cut else UnsupportedFormatError):
        decode_image(data)
