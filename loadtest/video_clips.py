"""Clips for the video benchmarks, made in memory from a real photo: a camera pan with camera noise.

``pan_clip``: ``seconds`` of 30 fps at ``width`` x ``height`` (H.264 medium, crf 18, as a phone records
a scene; the pan of ``animegan.video_bench.make_clip``, back and forth), with AAC sound so the join
copies a real track.
``large_clip``: about ``mib`` MiB of 1080p at 30 fps (ultrafast, strong noise: frames are added until
the clip has that many bytes), for the gateway's memory under a large upload.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "railway_crossing.jpg"
RATE = 30


def pan_clip(seconds: float, width: int = 1280, height: int = 720, photo: Path = SAMPLE, seed: int = 0) -> bytes:
    """A slow pan and zoom over ``photo``, back and forth every 6 s, with camera noise (``seed``), H.264 medium
    crf 18, and a 440 Hz tone as its sound."""
    source = Image.open(photo).convert("RGB")
    scale = 1.35 * max(width / source.width, height / source.height)
    big = source.resize((round(source.width * scale), round(source.height * scale)), Image.Resampling.LANCZOS)
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=RATE, options={"crf": "18", "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(round(seconds * RATE)):
            phase = (index % (6 * RATE)) / (3 * RATE)
            t = phase if phase <= 1 else 2 - phase  # 0 -> 1 -> 0 over 6 s
            zoom = 1.0 - 0.08 * t
            w, h = big.width / 1.35 * zoom, big.height / 1.35 * zoom
            x, y = (big.width - w) * t, (big.height - h) * (0.2 + 0.6 * t)
            view = big.resize((width, height), Image.Resampling.BILINEAR, box=(x, y, x + w, y + h))
            noisy = np.clip(np.asarray(view, np.float32) + rng.normal(0, 2.0, (height, width, 3)), 0, 255)
            frame = av.VideoFrame.from_ndarray(noisy.astype(np.uint8), format="rgb24")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return _with_tone(buffer.getvalue(), seconds)


def large_clip(mib: float, photo: Path = SAMPLE, max_seconds: float = 60.0) -> bytes:
    """About ``mib`` MiB of 1920x1080 at 30 fps: a pan with strong noise (rate factor 23), frames added
    until the clip has that many bytes (or lasts ``max_seconds``)."""
    width, height = 1920, 1080
    source = Image.open(photo).convert("RGB").resize((int(width * 1.4), int(height * 1.4)))
    base = np.asarray(source)
    noise = np.random.default_rng(0).integers(-12, 13, (8, height, width, 3), dtype=np.int16)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=RATE, options={"crf": "23", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        index = 0
        while buffer.tell() < mib * 2**20 * 0.98 and index < max_seconds * RATE:
            x, y = (index * 2) % (base.shape[1] - width), (index // 2) % (base.shape[0] - height)
            pixels = np.clip(base[y : y + height, x : x + width].astype(np.int16) + noise[index % 8], 0, 255)
            frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint8), format="rgb24")
            frame.pts = index
            output.mux(stream.encode(frame))
            index += 1
        output.mux(stream.encode(None))
    return buffer.getvalue()


def _with_tone(video: bytes, seconds: float) -> bytes:
    """``video`` remuxed with an AAC tone of ``seconds`` (stereo, 48 kHz), interleaved by time as a camera writes."""
    buffer = io.BytesIO()
    rate = 48_000
    with av.open(io.BytesIO(video)) as source, av.open(buffer, "w", format="mp4") as output:
        template = source.streams.video[0]
        target = output.add_stream_from_template(template)
        sound = output.add_stream("aac", rate=rate)
        sound.codec_context.layout = "stereo"
        packets = [(p, target) for p in source.demux(template) if p.size]
        total = round(rate * seconds)
        for start in range(0, total + 1024, 1024):
            if start < total:
                t = np.arange(start, min(total, start + 1024)) / rate
                tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, start
                packets += [(p, sound) for p in sound.encode(frame)]
            else:
                packets += [(p, sound) for p in sound.encode(None)]
        packets.sort(key=lambda item: float((item[0].dts or 0) * item[0].time_base))
        for packet, stream in packets:
            packet.stream = stream
            output.mux(packet)
    return buffer.getvalue()
