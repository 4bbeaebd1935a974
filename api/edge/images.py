"""Image normalisation at the gateway: decode, orient, frame, downscale and hash an upload off the event loop.

Memory: every upload is weighed from its header before it is decoded and waits for that many
bytes of the decode budget (``api.edge.decode_budget``, ANIMEGAN_DECODE_MEMORY_BYTES); one that needs
more than the whole budget is refused as ``too-many-pixels``. At most ANIMEGAN_DECODE_CONCURRENCY
decodes run at once (threads), and after a large one the freed memory is handed back. Decoding uses the runtime-free
``imaging`` package; its errors become problems here. Scene mode queues the whole photo
downscaled to ANIMEGAN_MAX_SIDE; portrait mode queues one square at 512x512 (``imaging.crops``).
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from api.config import ApiSettings
from api.edge.decode_budget import TRIM_AFTER_BYTES, DecodeBudget, release_memory
from api.problems import ApiError
from imaging.crops import DEFAULT_MODE, CropBox
from imaging.decode import DecodedImage, decode_image, decode_memory, decode_portrait
from imaging.errors import CropError, ImageError, ImageTooLargeError, UnsupportedFormatError
from imaging.formats import declared
from jobstore.queue import request_digest

MiB = 1024 * 1024


@dataclass(frozen=True)
class NormalizedImage:
    """The pixels a worker reads and their sizes; the request's options travel apart (``api.jobs.request``)."""

    raw_rgb: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    digest: str  # jobstore.queue.request_digest of these pixels, style and format


class ImageNormalizer:
    """Turns upload bytes into the raw RGB input a worker reads (raises ApiError for bad images)."""

    def __init__(self, settings: ApiSettings) -> None:
        self.max_side = settings.max_side
        self.max_pixels = settings.max_pixels
        self._decode_slots = anyio.Semaphore(settings.decode_concurrency)
        self.budget = DecodeBudget(settings.decode_memory_bytes)

    async def normalize(
        self, data: bytes, *, style: str, fmt: str, mode: str = DEFAULT_MODE, crop: CropBox | None = None
    ) -> NormalizedImage:
        """Decode, orient, frame, downscale and hash in a worker thread, within the decode budget."""
        cost = decode_memory(data, max_side=self.max_side)
        if cost > self.budget.total:
            raise self._over_budget(data, cost)
        async with self.budget.hold(cost), self._decode_slots:
            try:
                return await anyio.to_thread.run_sync(self._normalize_sync, data, style, fmt, mode, crop, cost)
            except CropError as exc:
                detail = str(exc)
                raise ApiError(
                    "validation-error", detail, extra={"errors": [{"loc": ["body", "crop"], "msg": detail}]}
                ) from None
            except UnsupportedFormatError as exc:
                raise ApiError("unsupported-media-type", str(exc)) from None
            except ImageTooLargeError as exc:
                raise ApiError("too-many-pixels", str(exc)) from None
            except ImageError as exc:
                raise ApiError("invalid-image", str(exc)) from None

    def _over_budget(self, data: bytes, cost: int) -> ApiError:
        header = declared(data)
        size = f"{header.width}x{header.height} " if header is not None else ""
        return ApiError(
            "too-many-pixels",
            f"Decoding this {size}image would take about {cost / MiB:.0f} MiB; the gateway decodes "
            f"at most {self.budget.total / MiB:.0f} MiB at once (ANIMEGAN_DECODE_MEMORY_BYTES).",
        )

    def _normalize_sync(
        self, data: bytes, style: str, fmt: str, mode: str, crop: CropBox | None, cost: int
    ) -> NormalizedImage:
        try:
            decoded = self._decode(data, mode, crop)
        finally:
            if cost >= TRIM_AFTER_BYTES:
                release_memory()
        raw = decoded.image.tobytes()
        return NormalizedImage(
            raw_rgb=raw,
            width=decoded.width,
            height=decoded.height,
            original_width=decoded.original_width,
            original_height=decoded.original_height,
            digest=request_digest(raw, decoded.width, decoded.height, style, fmt),
        )

    def _decode(self, data: bytes, mode: str, crop: CropBox | None) -> DecodedImage:
        if mode == "portrait":
            return decode_portrait(data, crop=crop, max_pixels=self.max_pixels)
        return decode_image(data, max_side=self.max_side, max_pixels=self.max_pixels)
