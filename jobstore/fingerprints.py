"""Identities of requests: what deduplication and Idempotency-Key compare."""

from __future__ import annotations

import hashlib


def request_digest(raw_rgb: bytes, width: int, height: int, style: str, fmt: str) -> str:
    """Identity of a job for deduplication: the normalized pixels plus what was asked of them."""
    h = hashlib.sha256(raw_rgb)
    h.update(f"|{width}x{height}|{style}|{fmt}".encode())
    return h.hexdigest()


def upload_digest(
    upload: bytes, style: str, fmt: str, max_side: int, mode: str = "scene", crop: str | None = None
) -> str:
    """Identity of an upload before decoding: the same bytes always normalize to the same pixels.

    Lets the gateway answer a repeated upload without decoding it again, and doubles as the
    request fingerprint of an Idempotency-Key. ``mode`` and ``crop`` (its canonical ``x,y,w,h``)
    choose which pixels the bytes normalize to, so they are part of it.
    """
    h = hashlib.sha256(upload)
    h.update(f"|upload|{style}|{fmt}|{max_side}".encode())
    if mode != "scene" or crop is not None:
        # Scene mode keeps the digest it always had: fingerprints stored before portrait mode
        # existed (dedup entries, Idempotency-Keys) still match after an upgrade.
        h.update(f"|{mode}|{crop or 'centre'}".encode())
    return h.hexdigest()
