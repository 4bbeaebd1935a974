"""What can be wrong with an image, told safely to the person who sent it.

Owns the exception tree only; imports nothing. Every message (``str(error)``) names the problem
and what to do about it, and never carries a traceback, a server path or raw library text about
internals. ``title`` is a short fixed label for problem documents and job records.

Exception tree, and the HTTP status the gateway maps each one to::

    ImageError                      base class, never raised itself
    ├── InvalidImageError           422  undecodable, truncated or corrupt image data,
    │                                    empty upload, zero-sized image, oversized metadata
    ├── UnsupportedFormatError      415  not JPEG, PNG or WebP by its magic bytes
    │                                    (GIF, TIFF, BMP, SVG, HTML, polyglots, ...)
    ├── ImageTooLargeError          422  too many pixels (decompression bomb), refused
    │                                    from the header before a full decode
    └── CropError                   422  a crop box that is malformed, not square or not
                                         inside the image (``imaging.crops``)
"""

from __future__ import annotations


class ImageError(Exception):
    """Base class of every error the imaging package raises on purpose."""

    title = "Image error"


class InvalidImageError(ImageError):
    """The bytes claim an allowed format but cannot be decoded (truncated, corrupt, empty)."""

    title = "Invalid image"


class UnsupportedFormatError(ImageError):
    """The bytes are not a JPEG, PNG or WebP image, judged by their magic bytes."""

    title = "Unsupported image format"


class ImageTooLargeError(ImageError):
    """The image declares more pixels than allowed; refused before it is decoded."""

    title = "Image too large"


class CropError(ImageError):
    """A crop box that is malformed, not square, or not inside the image."""

    title = "Invalid crop box"
