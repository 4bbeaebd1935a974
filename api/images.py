"""Image normalisation at the gateway: decode, orient, frame, downscale and hash an upload off the event loop.

At most ANIMEGAN_DECODE_CONCURRENCY decoded images exist at once (a semaphore), so the gateway's
memory stays bounded whatever the number of uploads in flight. Decoding uses the runtime-free
``imaging`` package; its errors become problems here. Scene mode queues the whole photo
downscaled to ANIMEGAN_MAX_SIDE; portrait mode queues one square at 512x512 (``imaging.crops``).
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from api.config import ApiSettings
from api.problems import ApiError
from imaging.crops import DEFAULT_MODE, CropBox
from imaging.decode import DecodedImage, decode_image, decode_portrait
from imaging.errors import CropError, ImageError, ImageTooLargeError, UnsupportedFormatError
from jobstore.queue import request_digest


@dataclass(frozen=True)
class NormalizedImage:
    raw_rgb: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    digest: str  # jobstore.queue.request_digest of these pixels, style and format
    mode: str = DEFAULT_MODE  # "scene" or "portrait"
    crop: str | None = None  # the portrait box as x,y,w,h; None for the centre square (or scene)


class ImageNormalizer:
    """Turns upload bytes into the raw RGB input a worker reads (raises ApiError for bad images)."""

    def __init__(self, settings: ApiSettings) -> None:
        self.max_side = settings.max_side
        self.max_pixels = settings.max_pixels
        self._decode_slots = anyio.Semaphore(settings.decode_concurrency)

    async def normalize(
        self, data: bytes, *, style: str, fmt: str, mode: str = DEFAULT_MODE, crop: CropBox | None = None
    ) -> NormalizedImage:
        """Decode, orient, frame, downscale and hash in a worker thread."""
        async with self._decode_slots:
            try:
                return await anyio.to_thread.run_sync(self._normalize_sync, data, style, fmt, mode, crop)
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

    def _normalize_sync(self, data: bytes, style: str, fmt: str, mode: str, crop: CropBox | None) -> NormalizedImage:
        decoded = self._decode(data, mode, crop)
        raw = decoded.image.tobytes()
        return NormalizedImage(
            raw_rgb=raw,
            width=decoded.width,
            height=decoded.height,
            original_width=decoded.original_width,
            original_height=decoded.original_height,
            digest=request_digest(raw, decoded.width, decoded.height, style, fmt),
            mode=mode,
            crop=None if crop is None else str(crop),
        )

    def _decode(self, data: bytes, mode: str, crop: CropBox | None) -> DecodedImage:
        if mode == "portrait":
            return decode_portrait(data, crop=crop, max_pixels=self.max_pixels)
        return decode_image(data, max_side=self.max_side, max_pixels=self.max_pixels)
