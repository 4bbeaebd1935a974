"""Pieces in order plus the original sound, remuxed into one MP4 in memory.

The pieces' H.264 packets are copied as they are. Every packet's timestamp and duration is
checked against the source clip's frame table, so the output has exactly the input's frames,
frame times (a variable rate kept), duration and frame rate, or the join refuses; the pieces
must come from one encoder setting (same parameter sets and size). The source's display
matrix is written unchanged, and its first audio stream copied or re-encoded (``video.audio``).
Video and sound are interleaved by time as they are written, and the index is put first
(faststart), so the result plays while it downloads.
"""

from __future__ import annotations

import heapq
import io
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
import av.container
import av.packet
import av.video.stream

from video import mp4
from video.audio import audio_packets
from video.frametable import FrameTable
from video.probe import ClipInfo, Limits, inspect_clip
from video.source import Buffer, Source, open_input, read_source


class PieceMismatchError(ValueError):
    """A piece does not fit the clip: wrong frames or times, or another encoder setting."""


def join_pieces(
    pieces: Iterable[Buffer], source: Source, *, limits: Limits | None = None, info: ClipInfo | None = None
) -> bytes:
    """One MP4 from the pieces of the clip in ``source`` (in segment order) and its sound.

    ``info``: the probe of these same bytes, kept since (the clip is not probed again). Pieces are
    opened one at a time as the iterable yields them. Raises PieceMismatchError when the pieces do
    not hold exactly the clip's frames.
    """
    data = read_source(source)
    info = info or inspect_clip(data, limits)
    opened = (open_input(piece, "mp4") for piece in pieces)
    first = next(opened, None)
    if first is None:
        raise PieceMismatchError("no pieces to join")
    buffer = io.BytesIO()
    with (
        open_input(data, info.container) as media,
        mp4.open_writer(buffer, info.frames.time_base, faststart=True) as output,
    ):
        template = first.streams.video[0]
        video = output.add_stream_from_template(template)
        video.time_base = template.time_base
        if info.display_matrix is not None:
            video.set_display_matrix(info.display_matrix)
        sound = audio_packets(media, output) if info.audio is not None else iter(())
        checked = _checked(_piece_packets(first, opened, video), info.frames)
        for packet in heapq.merge(checked, sound, key=_decode_time):
            output.mux(packet)
    return buffer.getvalue()


def _piece_packets(
    first: av.container.InputContainer, rest: Iterator[av.container.InputContainer], target: av.video.stream.VideoStream
) -> Iterator[av.packet.Packet[Any]]:
    # Plain values: a container's streams are freed when it closes, and the first closes first.
    reference = _settings(first.streams.video[0])
    for number, piece in enumerate(_chain(first, rest)):
        with piece:
            stream = piece.streams.video[0]
            if _settings(stream) != reference:
                raise PieceMismatchError(f"piece {number} was encoded with other settings than piece 0")
            for packet in piece.demux(stream):
                if packet.size:
                    packet.stream = target
                    yield packet


def _settings(stream: av.video.stream.VideoStream) -> tuple[bytes | None, int, int]:
    context = stream.codec_context
    return context.extradata, context.width, context.height


def _chain(
    first: av.container.InputContainer, rest: Iterator[av.container.InputContainer]
) -> Iterator[av.container.InputContainer]:
    yield first
    yield from rest


def _checked(packets: Iterator[av.packet.Packet[Any]], table: FrameTable) -> Iterator[av.packet.Packet[Any]]:
    """The packets, each checked to be the next frame of ``table`` at its exact time and duration."""
    index = 0
    for packet in packets:
        if index >= table.count:
            raise PieceMismatchError(f"the pieces hold more than the clip's {table.count} frames")
        time_base = Fraction(packet.time_base)
        expected = (table.pts[index] * table.time_base, table.durations[index] * table.time_base)
        if packet.pts is None or (packet.pts * time_base, (packet.duration or 0) * time_base) != expected:
            raise PieceMismatchError(f"frame {index} of the pieces is not at the clip's time for it")
        yield packet
        index += 1
    if index != table.count:
        raise PieceMismatchError(f"the pieces hold {index} of the clip's {table.count} frames")


def _decode_time(packet: av.packet.Packet[Any]) -> Fraction:
    return Fraction(packet.dts or 0) * Fraction(packet.time_base)
