"""What can be wrong with a clip, told safely to the person who sent it.

Owns the exception tree only; imports nothing. Every message (``str(error)``) names the problem
and what to do about it, and never carries a traceback, a server path or FFmpeg's own text.
``title`` is a short fixed label for problem documents and job records.

Exception tree, and the HTTP status the gateway maps each one to::

    VideoError                      base class, never raised itself
    ├── InvalidVideoError           422  empty, truncated, corrupt or undecodable clip, no video
    │                                    stream, timestamps that cannot be put in order
    ├── UnsupportedVideoError       415  not MP4, MOV, WebM or Matroska by its leading bytes, or
    │                                    video not H.264, H.265, VP9 or AV1
    ├── VideoTooLargeError          413  more bytes than the limit (refused while reading)
    ├── VideoTooLongError           422  lasts longer than the limit
    └── FrameTooLargeError          422  frames of more pixels than the limit (8K and the like)
"""

from __future__ import annotations


class VideoError(Exception):
    """Base class of every error the video package raises on purpose."""

    title = "Video error"


class InvalidVideoError(VideoError):
    """The bytes claim an accepted container but cannot be read or decoded."""

    title = "Invalid video"


class UnsupportedVideoError(VideoError):
    """A container or video codec this service does not accept."""

    title = "Unsupported video format"


class VideoTooLargeError(VideoError):
    """The clip has more bytes than allowed; refused before it is read whole."""

    title = "Video too large"


class VideoTooLongError(VideoError):
    """The clip lasts longer than allowed."""

    title = "Video too long"


class FrameTooLargeError(VideoError):
    """The clip's frames have more pixels than allowed; refused before they are decoded."""

    title = "Video frames too large"
