"""Batch file names and the streamed zip: names are safe and unique, the zip is valid and built entry by entry."""

from __future__ import annotations

import io
import zipfile

import anyio
import pytest

from api.batches.archive import ZipMember, stream_zip
from api.batches.names import display_name, zip_names


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\IMG 1.JPG", "IMG 1.JPG"),
        ("bell\x07\x00name\u202e.png", "bellname.png"),
        ("  ..hidden.. ", "hidden"),
        ("..", "image-4"),
        (None, "image-4"),
        ("x" * 500, "x" * 120),
    ],
)
def test_display_name_keeps_the_last_component_without_control_characters(raw: str | None, shown: str) -> None:
    assert display_name(raw, 3) == shown


def test_zip_names_take_the_output_extension_and_are_unique_ignoring_case() -> None:
    names = ["cat.jpg", "cat.jpeg", "Cat.png", "dog", "cat-2.jpg", ".jpg"]
    assert zip_names(names, ".png") == ["cat.png", "cat-2.png", "Cat-3.png", "dog.png", "cat-2-2.png", "image-6.png"]


def test_stream_zip_yields_each_entry_as_written_and_skips_results_that_are_gone() -> None:
    results = {"a": b"A" * 1000, "c": b"C" * 3000}
    reads: list[str] = []

    async def read(job_id: str) -> bytes | None:
        reads.append(job_id)
        return results.get(job_id)

    async def collect() -> list[bytes]:
        members = [ZipMember("one.png", "a", 1.7e9), ZipMember("gone.png", "b", 1.7e9), ZipMember("two.png", "c", 0.0)]
        chunks = []
        async for chunk in stream_zip(members, read):
            if not chunks:
                # Entry by entry: the first entry is out before the next result is read.
                assert reads == ["a"]
            chunks.append(chunk)
        return chunks

    chunks = anyio.run(collect)
    assert len(chunks[0]) > 1000
    assert b"A" * 1000 in chunks[0]
    assert b"C" not in chunks[0]
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["one.png", "two.png"]
        assert archive.read("two.png") == results["c"]
        assert archive.getinfo("one.png").compress_type == zipfile.ZIP_STORED


@pytest.mark.parametrize(
    ("shown", "zipped"),
    [
        ("C:evil.png", "C_evil.png"),
        ("a:stream.png", "a_stream.png"),
        ('what?"<>|*.jpg', "what______.png"),
        ("CON.png", "_CON.png"),
        ("nul.tar.gz", "_nul.tar.png"),
        ("com1.jpg", "_com1.png"),
        ("Lpt9", "_Lpt9.png"),
        ("console.jpg", "console.png"),
    ],
)
def test_zip_names_have_no_drive_colon_stream_or_windows_device_name(shown: str, zipped: str) -> None:
    assert zip_names([shown], ".png") == [zipped]


def test_zip_names_are_nfc_before_deduplication() -> None:
    composed, decomposed = "caf\u00e9.jpg", "cafe\u0301.jpg"
    assert zip_names([composed, decomposed], ".png") == ["caf\u00e9.png", "caf\u00e9-2.png"]


def test_zip_names_fit_255_bytes_of_utf8_and_keep_the_extension() -> None:
    long = "\U0001f600" * 120  # 480 bytes of UTF-8
    names = zip_names([long + ".jpg", long + ".jpeg"], ".webp")
    assert all(len(name.encode()) <= 255 for name in names)
    assert names[0].endswith(".webp")
    assert names[1].endswith("-2.webp")
    assert names[0] != names[1]
    assert names[0].removesuffix(".webp") == "\U0001f600" * 62  # whole characters only
