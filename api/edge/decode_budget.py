"""The gateway's decode memory budget: a weighted semaphore over the bytes decodes hold at once.

Each upload is weighed before it is decoded by ``imaging.decode.decode_memory`` (from its header:
the decoded pixels at Pillow's bytes per pixel, a reduced-scale JPEG decode, the resampling
strip), and waits until that many bytes of ANIMEGAN_DECODE_MEMORY_BYTES are free; first come,
first served, so a large image is not starved by small ones. An image that needs more than the
whole budget is refused (422 ``too-many-pixels``): that, with ANIMEGAN_MAX_PIXELS, is the pixel
limit of each format (WebP, which Pillow decodes as an animation at 16 bytes a pixel, about
13 megapixels with the default; PNG and JPEG up to ANIMEGAN_MAX_PIXELS).

After a large decode the freed memory is handed back to the system (glibc ``malloc_trim``):
without it the allocator keeps the pages of the worker thread's arena, and the process holds
hundreds of MB it no longer uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

# Decodes holding at least this much are followed by a malloc_trim (it costs a few ms).
TRIM_AFTER_BYTES = 32 * 1024 * 1024


class DecodeBudget:
    """``hold(n)`` waits until ``n`` of ``total`` bytes are free, in arrival order, and holds them."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.in_use = 0
        self._waiting: deque[tuple[int, anyio.Event]] = deque()

    @asynccontextmanager
    async def hold(self, amount: int) -> AsyncIterator[None]:
        if amount > self.total:
            raise ValueError(f"{amount} bytes is more than the whole budget ({self.total})")
        if self._waiting or self.in_use + amount > self.total:
            entry = (amount, anyio.Event())
            self._waiting.append(entry)
            try:
                await entry[1].wait()
            except BaseException:
                if entry[1].is_set():  # granted while being cancelled: give it back
                    self.in_use -= amount
                else:
                    self._waiting.remove(entry)
                self._grant()
                raise
        else:
            self.in_use += amount
        try:
            yield
        finally:
            self.in_use -= amount
            self._grant()

    def _grant(self) -> None:
        while self._waiting and self.in_use + self._waiting[0][0] <= self.total:
            amount, event = self._waiting.popleft()
            self.in_use += amount
            event.set()


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _find_malloc_trim()


def release_memory() -> None:
    """Hand the allocator's free pages back to the system (where the C library can)."""
    if _TRIM is not None:
        _TRIM(0)
