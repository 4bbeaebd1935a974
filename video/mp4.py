"""Writing MP4 into memory with every timestamp exact, and the index first when asked.

FFmpeg's MP4 muxer gives a video track the timescale of its stream's time base (doubled until it
reaches 10,000), but writes edit lists in the movie timescale, 1,000 by default: a clip starting
at 3000/15360 s would start at 2995/15360 s. Both timescales are set here to a multiple of the
time base's denominator, so every timestamp and the edit list convert by an integer factor.

``faststart`` moves the index (moov) before the media data, so a player can start before the
whole file has arrived. FFmpeg does that by reopening its output for reading; here that output
is a BytesIO, reopened through a reader over the same buffer.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any, Final

import av
import av.container

from video.source import ByteReader

# FFmpeg's own lower bound for a video track's timescale (libavformat/movenc.c).
_MIN_TIMESCALE: Final = 10_000


def timescale(time_base: Fraction) -> int:
    """The MP4 timescale FFmpeg picks for ``time_base``: its denominator, doubled until >= 10,000."""
    scale = time_base.denominator
    while scale < _MIN_TIMESCALE:
        scale *= 2
    return scale


def open_writer(buffer: io.BytesIO, time_base: Fraction, *, faststart: bool) -> av.container.OutputContainer:
    """An MP4 muxer writing into ``buffer`` whose movie and video timescale keep ``time_base`` exact."""
    scale = str(timescale(time_base))
    options = {"movie_timescale": scale, "video_track_timescale": scale}
    if faststart:
        options["movflags"] = "+faststart"

    def reopen(url: str, flags: int, _options: dict[str, Any]) -> ByteReader:
        return ByteReader(buffer)

    return av.open(buffer, "w", format="mp4", options=options, io_open=reopen if faststart else None)
