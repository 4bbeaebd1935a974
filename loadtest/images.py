"""Upload bodies for the load test, made in memory: photos resized to a scenario's sizes, or generated ones.

Pillow and the standard library only (the locustfile imports this; nothing of the service is imported).
Photos come from a folder the user names; without one, photo-like pictures are generated (gradients, soft
shapes, sensor noise), so the project ships no image it would need a licence for. Nothing touches the disk
except reading the user's photos.
"""

from __future__ import annotations

import io
import os
import random
import struct
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageOps

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
DEFAULT_UPLOAD_LIMIT = 5 * 1024 * 1024
# A 4000x3000 render is 36 MB of RGB: keep a few, not all.
MAX_CACHED_PIXELS = 48_000_000
BAD_CASES = (
    "truncated", "wrong_type", "oversize", "pixel_bomb", "empty", "unknown_style", "unknown_format", "no_file",
)  # fmt: skip


def load_photos(folder: str | os.PathLike[str]) -> list[Image.Image]:
    """Every photo in ``folder`` (sorted by name, EXIF-rotated, RGB, longest side capped at 4000)."""
    photos = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        with Image.open(path) as opened:
            photo = ImageOps.exif_transpose(opened).convert("RGB")
        photo.thumbnail((4000, 4000), Image.Resampling.LANCZOS)
        photos.append(photo)
    return photos


def synthetic_photo(seed: int, size: tuple[int, int] = (1600, 1200)) -> Image.Image:
    """A photo-like picture made from nothing: sky and ground gradients, soft shapes, sensor noise."""
    rng = random.Random(seed)
    width, height = size

    def colour() -> tuple[int, int, int]:
        return (rng.randrange(256), rng.randrange(256), rng.randrange(256))

    mask = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    image = Image.composite(Image.new("RGB", size, colour()), Image.new("RGB", size, colour()), mask)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, int(height * rng.uniform(0.45, 0.75)), width, height), fill=colour())
    for _ in range(rng.randint(8, 16)):
        x, y = rng.randrange(width), rng.randrange(height)
        w, h = rng.randint(width // 20, width // 3), rng.randint(height // 20, height // 3)
        if rng.random() < 0.5:
            draw.ellipse((x - w // 2, y - h // 2, x + w // 2, y + h // 2), fill=colour())
        else:
            draw.polygon([(x + rng.randint(-w, w), y + rng.randint(-h, h)) for _ in range(rng.randint(3, 6))], colour())
    image = image.filter(ImageFilter.GaussianBlur(radius=max(1, width // 400)))
    # Seeded noise (Image.effect_noise is not): the same seed gives the same picture.
    noise = Image.frombytes("RGB", size, rng.randbytes(width * height * 3))
    return Image.blend(image, noise, 0.08)


def encode_jpeg(image: Image.Image, budget: int = DEFAULT_UPLOAD_LIMIT - 64 * 1024) -> bytes:
    """JPEG bytes, quality stepped down until they fit ``budget`` (a 4000x3000 photo at q88 may not)."""
    for quality in (88, 80, 70, 60, 50, 40):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= budget:
            break
    return buffer.getvalue()


def stamp(image: Image.Image, rng: random.Random) -> Image.Image:
    """A copy with a small random patch, large enough to survive the service's downscale: no upload repeats."""
    marked = image.copy()
    side = max(4, min(image.size) // 16)
    x, y = rng.randrange(max(1, image.width - side)), rng.randrange(max(1, image.height - side))
    marked.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)), (x, y, x + side, y + side))
    return marked


class Photos:
    """The photo pool rendered at the sizes asked for (centre crop to the aspect, then resize), cached."""

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, upload_limit: int = DEFAULT_UPLOAD_LIMIT):
        self.folder = folder
        self.upload_budget = min(upload_limit, DEFAULT_UPLOAD_LIMIT) - 64 * 1024
        self._lock = threading.Lock()
        self._pool: list[Image.Image] | None = None
        self._renders: OrderedDict[tuple[int, int, int], Image.Image] = OrderedDict()

    @property
    def pool(self) -> list[Image.Image]:
        """The user's photos when the folder holds some, else four generated ones (loaded on first use)."""
        with self._lock:
            if self._pool is None:
                photos = load_photos(self.folder) if self.folder else []
                self._pool = photos or [synthetic_photo(seed) for seed in range(4)]
            return self._pool

    def render(self, index: int, width: int, height: int) -> Image.Image:
        """Photo ``index`` (modulo the pool) at exactly ``width`` x ``height``."""
        pool = self.pool
        key = (index % len(pool), width, height)
        with self._lock:
            if key not in self._renders:
                self._renders[key] = ImageOps.fit(pool[key[0]], (width, height), Image.Resampling.BICUBIC)
                while sum(r.width * r.height for r in self._renders.values()) > MAX_CACHED_PIXELS:
                    self._renders.popitem(last=False)
            self._renders.move_to_end(key)
            return self._renders[key]

    def jpeg(self, index: int, width: int, height: int) -> bytes:
        """The same bytes every time for the same arguments (what duplicate submissions send)."""
        return encode_jpeg(self.render(index, width, height), self.upload_budget)

    def unique_jpeg(self, rng: random.Random, width: int, height: int) -> bytes:
        """A random photo of the pool at that size, stamped so that it differs from every other upload."""
        return encode_jpeg(stamp(self.render(rng.randrange(1 << 16), width, height), rng), self.upload_budget)


def png_header_only(width: int, height: int) -> bytes:
    """A valid-looking PNG that declares ``width`` x ``height`` pixels but carries almost no data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


def bad_upload(
    case: str, photo: bytes, fields: dict[str, str], *, upload_limit: int = DEFAULT_UPLOAD_LIMIT
) -> tuple[tuple[str, bytes, str] | None, dict[str, str]]:
    """The file part (or None for no file) and form fields of one bad-input case of ``BAD_CASES``.

    ``photo`` is a valid JPEG the case starts from; ``fields`` the valid form fields.
    """
    image: tuple[str, bytes, str] | None = ("photo.jpg", photo, "image/jpeg")
    fields = dict(fields)
    if case == "truncated":
        image = ("photo.jpg", photo[: len(photo) // 2], "image/jpeg")
    elif case == "wrong_type":  # a GIF sent as image/jpeg: only the magic bytes tell
        image = ("photo.jpg", b"GIF89a" + random.randbytes(2048), "image/jpeg")
    elif case == "oversize":
        image = ("photo.jpg", photo[:2] + random.randbytes(upload_limit + 1024 * 1024), "image/jpeg")
    elif case == "pixel_bomb":  # 900 megapixels declared in the header
        image = ("bomb.png", png_header_only(30_000, 30_000), "image/png")
    elif case == "empty":
        image = ("photo.jpg", b"", "image/jpeg")
    elif case == "unknown_style":
        fields["style"] = "no-such-style"
    elif case == "unknown_format":
        fields["format"] = "bmp"
    elif case == "no_file":
        image = None
    else:
        raise ValueError(f"unknown bad-input case {case!r}")
    return image, fields
