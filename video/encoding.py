"""H.264 pieces in memory: stylized frames in, an MP4 of exactly those frames and timestamps out.

A piece is a plain MP4 (``video.mp4``: timescales that keep the input's time base exact, every
frame's own duration in the sample table, so a variable frame rate and the last frame's length
survive). Why MP4 and not another carrier: MPEG-TS rounds every timestamp to a 90 kHz clock
(1/15360 or 1/24000 time bases do not divide it), Matroska to milliseconds, and FFmpeg's
fragmented MP4 rebases each piece to start at zero; raw H.264 would need a timestamp table of
its own. The join remuxes the pieces' packets as they are (``video.join``).

The encoder's rate is capped (x264's VBV: ``max_bits_per_pixel`` of every frame at the clip's
frame rate, a buffer of two seconds of it), so a piece's size has a bound known before it is
encoded (``piece_bytes_bound``): the job store reserves room for pieces and results by it. The cap
sits well above what constant quality spends on stylized frames (about 0.12 bits per pixel
measured on a panning 720p clip with camera noise), so it binds on pathological input only.

libx264 runs without B-frames, so every packet's decode time is its presentation time: pieces
encoded apart join into one stream whose decode times keep increasing, with no reordering delay
to reconcile at the seams. One thread and no lookahead keep a worker's memory near that of a
photo: at 1280x720 x264's lookahead (its macroblock tree) held 28 MB more for 10 frames, and
crf 19 without it gives what crf 20 with it gave (bytes within 5 %, PSNR within 0.1 dB, on a
camera pan and on flat cartoon-like frames; ``loadtest.video_bench worker`` measures the memory).
The engine costs hundreds of times more per frame than the encoder, so the preset can afford to
be thorough (see ``animegan/video_bench.py`` for the measurements behind the preset).
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

import av
import av.packet
import av.video.stream

from video import mp4
from video.picture import OUTPUT_PIXEL_FORMAT

_BT709: Final = 1
_LIMITED_RANGE: Final = 1
# Seconds of the capped rate the VBV buffer holds: what a piece may spend above the cap, at most.
_VBV_BUFFER_S: Final = 2
# MP4 boxes around the frames: the headers, and an index entry per frame (sizes, times, chunk offsets).
_MP4_FIXED_BYTES: Final = 4096
_MP4_BYTES_PER_FRAME: Final = 32


@dataclass(frozen=True)
class Encoding:
    """libx264 settings: preset, constant rate factor, lookahead frames, encoder threads, rate cap."""

    preset: str = "medium"
    crf: int = 19
    lookahead: int = 0
    threads: int = 1
    max_bits_per_pixel: float = 0.4

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51 or self.lookahead < 0 or self.threads < 1 or self.max_bits_per_pixel <= 0:
            raise ValueError("crf must be 0-51, lookahead at least 0, threads at least 1, the rate cap positive")

    def max_kbits_per_second(self, size: tuple[int, int], frame_rate: Fraction) -> int:
        """The rate cap of frames of ``size`` at ``frame_rate`` (x264's vbv-maxrate), in kbit/s."""
        return max(1, math.ceil(self.max_bits_per_pixel * size[0] * size[1] * frame_rate / 1000))


def piece_bytes_bound(
    size: tuple[int, int], frame_rate: Fraction, duration: Fraction, frames: int, encoding: Encoding | None = None
) -> int:
    """Most bytes an MP4 of ``frames`` frames of ``size`` lasting ``duration`` seconds can take (also a bound
    of the joined clip's video, whose pieces add up to it)."""
    encoding = encoding or Encoding()
    kbits = encoding.max_kbits_per_second(size, frame_rate)
    video_bits = kbits * 1000 * (duration + _VBV_BUFFER_S)
    return math.ceil(video_bits / 8) + _MP4_FIXED_BYTES + _MP4_BYTES_PER_FRAME * frames


class PieceWriter:
    """Encodes frames with their timestamps into an MP4 held in memory; ``finish`` returns its bytes."""

    def __init__(
        self, size: tuple[int, int], time_base: Fraction, frame_rate: Fraction, encoding: Encoding | None = None
    ) -> None:
        encoding = encoding or Encoding()
        self._buffer = io.BytesIO()
        self._output = mp4.open_writer(self._buffer, time_base, faststart=False)
        maxrate = encoding.max_kbits_per_second(size, frame_rate)
        vbv = f"vbv-maxrate={maxrate}:vbv-bufsize={maxrate * _VBV_BUFFER_S}"
        params = f"bframes=0:rc-lookahead={encoding.lookahead}:{vbv}"
        options = {"preset": encoding.preset, "crf": str(encoding.crf), "x264-params": params}
        self._stream: av.video.stream.VideoStream = self._output.add_stream("libx264", rate=frame_rate, options=options)
        context = self._stream.codec_context
        context.width, context.height = size
        context.pix_fmt = OUTPUT_PIXEL_FORMAT
        context.time_base = time_base
        context.thread_count = encoding.threads
        context.colorspace = context.color_primaries = context.color_trc = _BT709
        context.color_range = _LIMITED_RANGE
        self._stream.time_base = time_base
        self._time_base = time_base
        # Durations of frames sent but not yet out of the encoder's lookahead, by pts.
        self._pending: dict[int, int] = {}
        self.frames = 0

    def write(self, frame: av.VideoFrame, pts: int, duration: int) -> None:
        """Encode ``frame`` to be shown at ``pts`` for ``duration`` (both in the time base)."""
        frame.pts = pts
        frame.time_base = self._time_base
        self._pending[pts] = duration
        self._mux(self._stream.encode(frame))
        self.frames += 1

    def finish(self) -> bytes:
        """Flush the encoder and close the MP4; returns the piece's bytes."""
        self._mux(self._stream.encode(None))
        self._output.close()
        if self._pending:
            raise RuntimeError(f"the encoder dropped {len(self._pending)} frame(s)")
        return self._buffer.getvalue()

    def close(self) -> None:
        """Release the muxer without finishing (after an error): what it held is dropped."""
        with contextlib.suppress(av.FFmpegError, ValueError):
            self._output.close()

    def _mux(self, packets: list[av.packet.Packet[Any]]) -> None:
        for packet in packets:
            if packet.pts is None or packet.pts not in self._pending:
                raise RuntimeError("the encoder changed a frame's timestamp")
            packet.duration = self._pending.pop(packet.pts)
            self._output.mux(packet)
