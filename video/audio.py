"""The clip's sound in the output MP4: its packets copied untouched where MP4 carries the codec, else AAC.

MP4 carries AAC, MP3, Opus, FLAC, ALAC, AC-3 and E-AC-3; their packets are copied byte for byte
with their timestamps, so the sound is exactly the original's. Anything else (Vorbis from a WebM,
PCM from a MOV or MKV, ...) is decoded and encoded to AAC at the same sample rate and channel
layout, frame by frame. Only the first audio stream is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import av
import av.audio.stream
import av.container
import av.packet

from video.errors import InvalidVideoError, UnsupportedVideoError

MP4_AUDIO_CODECS: Final = frozenset({"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"})
# FFmpeg's default layout for a channel count, for sound whose channel order is unspecified
# (PCM in Matroska): the AAC encoder takes named layouts only.
_DEFAULT_LAYOUTS: Final = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# AAC bit rate per channel when the sound has to be re-encoded.
_AAC_BITS_PER_CHANNEL: Final = 96_000


def is_copied(codec: str) -> bool:
    """True when the output MP4 carries ``codec`` as it is."""
    return codec in MP4_AUDIO_CODECS


def audio_packets(
    media: av.container.InputContainer, output: av.container.OutputContainer
) -> Iterator[av.packet.Packet[Any]]:
    """Packets of the first audio stream of ``media`` for ``output``, in decode order (added as a stream there).

    Call before the output's header is written; nothing is read from ``media`` until iterated.
    """
    source: av.audio.stream.AudioStream = media.streams.audio[0]
    if is_copied(source.codec_context.codec.canonical_name):
        target = output.add_stream_from_template(source)
        return _copied(media, source, target)
    context = source.codec_context
    encoder = output.add_stream("aac", rate=context.sample_rate)
    encoder.codec_context.layout = _aac_layout(context.layout.name, context.channels)
    encoder.codec_context.format = "fltp"  # the only sample format FFmpeg's AAC encoder takes
    encoder.codec_context.bit_rate = _AAC_BITS_PER_CHANNEL * context.channels
    return _transcoded(media, source, encoder)


def _aac_layout(name: str, channels: int) -> str:
    if not name.endswith("channels"):
        return name
    if channels not in _DEFAULT_LAYOUTS:
        raise UnsupportedVideoError(f"The clip's sound has {channels} channels; send at most 8.")
    return _DEFAULT_LAYOUTS[channels]


def _copied(
    media: av.container.InputContainer, source: av.audio.stream.AudioStream, target: av.audio.stream.AudioStream
) -> Iterator[av.packet.Packet[Any]]:
    for packet in _demuxed(media, source):
        packet.stream = target
        yield packet


def _transcoded(
    media: av.container.InputContainer, source: av.audio.stream.AudioStream, encoder: av.audio.stream.AudioStream
) -> Iterator[av.packet.Packet[Any]]:
    try:
        for packet in _demuxed(media, source):
            for frame in source.decode(packet):
                yield from encoder.encode(frame)
        for frame in source.decode(None):
            yield from encoder.encode(frame)
    except av.FFmpegError as exc:
        raise InvalidVideoError("The clip's sound could not be decoded: it is truncated or corrupt.") from exc
    yield from encoder.encode(None)


def _demuxed(
    media: av.container.InputContainer, source: av.audio.stream.AudioStream
) -> Iterator[av.packet.Packet[Any]]:
    for packet in media.demux(source):
        if packet.size and packet.dts is not None:
            yield packet
