"""`python -m animegan.video_bench`: the video path against the photo path, through the real engine.

Prints, with the CPU model and the engine's precision:

- frames per second per core of a segment run at the clip size (decode, downscale, engine,
  H.264 encode), the engine's share of that run's time (measured inside the run, so a noisy host
  cannot skew it), and the rate of the engine alone on the same frames as photos;
- peak RSS (VmHWM) of the process running the segment against one running the photos;
- per libx264 setting (preset, crf): encode time per frame, share of the engine's time per
  frame, bytes per frame and PSNR against the stylized frames it encoded, and the peak RSS of a
  segment run with an identity ``stylize`` (the codec's own memory);
- flicker: mean absolute change between consecutive frames of the output against the input's,
  before and after the codec, for the panning clip and for a still camera (noise only).

The clip is made from a real photo (``--photo``, default the railway crossing sample): a slow
camera pan and zoom over it at 30 fps, with camera noise, encoded as H.264 at crf 18. Every
measurement runs in a fresh single-thread process pinned to one core, video and photo
processes alternating round by round, so a noisy host slows both alike.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from inference.precision import cpu_model

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "railway_crossing.jpg"
SETTINGS = (("ultrafast", 20), ("veryfast", 20), ("medium", 18), ("medium", 20), ("medium", 23), ("slow", 20))


def make_clip(photo: Path, width: int, height: int, frames: int, seed: int = 0, *, moving: bool = True) -> bytes:
    """A camera pan and slow zoom over ``photo`` (or a still camera) at 30 fps with camera noise, H.264 crf 18."""
    source = Image.open(photo).convert("RGB")
    scale = 1.35 * max(width / source.width, height / source.height)
    big = source.resize((round(source.width * scale), round(source.height * scale)), Image.Resampling.LANCZOS)
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=30, options={"crf": "18", "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            t = index / 90 if moving else 0.5  # the pan crosses the photo in 3 s, whatever the frame count
            zoom = 1.0 - 0.08 * t  # the window shrinks: a slow zoom in
            w, h = big.width / 1.35 * zoom, big.height / 1.35 * zoom
            x, y = (big.width - w) * t, (big.height - h) * (0.2 + 0.6 * t)
            view = big.resize((width, height), Image.Resampling.BILINEAR, box=(x, y, x + w, y + h))
            noisy = np.clip(np.asarray(view, np.float32) + rng.normal(0, 2.0, (height, width, 3)), 0, 255)
            frame = av.VideoFrame.from_ndarray(noisy.astype(np.uint8), format="rgb24")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m animegan.video_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=SAMPLE.parents[1] / "weights" / "hayao.pt")
    parser.add_argument("--style", default="hayao")
    parser.add_argument("--precision", default="auto", help="auto, fp32 or bf16 (default: auto)")
    parser.add_argument("--photo", type=Path, default=SAMPLE)
    parser.add_argument("--size", default="1280x720", help="clip size WxH (default: 1280x720)")
    # A service segment is about two seconds: 60 frames at 30 fps.
    parser.add_argument("--frames", type=int, default=60, help="frames per measured segment (default: 60)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating video/photo rounds (default: 2)")
    parser.add_argument("--sweep-frames", type=int, default=10, help="stylized frames the libx264 settings encode")
    parser.add_argument("--flicker-frames", type=int, default=60)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=0, help="core the measuring processes are pinned to")
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    width, height = (int(side) for side in args.size.split("x"))
    clip = make_clip(args.photo, width, height, max(args.frames, args.flicker_frames))
    args.flicker_frames = max(args.frames, args.flicker_frames)
    _say(f"CPU: {cpu_model()}; clip {width}x{height} from {args.photo.name}, {len(clip)} bytes")
    _throughput(args, clip)
    _settings(args, clip)
    still = make_clip(args.photo, width, height, args.flicker_frames, moving=False)
    for name, frames in (("panning camera", clip), ("still camera, noise only", still)):
        flicker = _run_child(args, "flicker", frames)
        _say(
            f"flicker, {name}, {flicker['pairs']} frame pairs: input change {flicker['input']:.2f}, output change "
            f"{flicker['output']:.2f} (x{flicker['ratio']:.2f}); stylized, before the codec "
            f"{flicker['raw_output']:.2f} (x{flicker['raw_ratio']:.2f})"
        )
    return 0


def _throughput(args: argparse.Namespace, clip: bytes) -> None:
    video: list[dict[str, Any]] = []
    photo: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        video.append(_run_child(args, "video", clip))
        photo.append(_run_child(args, "photo", clip))
    v_fps = statistics.median(r["fps"] for r in video)
    p_fps = statistics.median(r["fps"] for r in photo)
    v_rss, p_rss = max(r["peak_mib"] for r in video), max(r["peak_mib"] for r in photo)
    _say(f"engine precision: {video[0]['precision']} ({video[0]['runtime']}), one thread, one core")
    _say(f"video segment run: {v_fps:.3f} frames/s per core (rounds: {_rounds(video)})")
    _say(f"photos (engine):   {p_fps:.3f} frames/s per core (rounds: {_rounds(photo)})")
    # The engine's share of the segment's own wall time is immune to a noisy host: both parts run
    # in the same process, frame after frame. The cross-process ratio shows the host's noise too.
    share = statistics.median(r["engine_share"] for r in video)
    _say(f"engine's share of a segment run: {share:.3f} (video at {share:.3f} of the engine's photo throughput)")
    _say(f"video / photo throughput across processes: {v_fps / p_fps:.3f} (target >= 0.90)")
    _say(f"peak RSS: video {v_rss:.0f} MiB, photo {p_rss:.0f} MiB, difference {v_rss - p_rss:+.0f} MiB (target <= +64)")


def _settings(args: argparse.Namespace, clip: bytes) -> None:
    sweep = _run_child(args, "sweep", clip)
    _say(f"libx264 on {sweep['frames']} stylized frames; engine {sweep['engine_s']:.3f} s/frame")
    _say("preset     crf  encode ms/frame  share of engine  bytes/frame  PSNR dB  codec-only peak RSS MiB")
    for row in sweep["rows"]:
        codec = _run_child(args, "codec", clip, f"{row['preset']}:{row['crf']}")
        share = row["encode_ms"] / 10 / sweep["engine_s"]  # ms / (1000 * s) as a percentage
        figures = f"{row['encode_ms']:>15.1f}  {share:>14.2f}%  {row['bytes']:>11.0f}  {row['psnr']:>7.2f}"
        _say(f"{row['preset']:<10} {row['crf']:>3}  {figures}  {codec['peak_mib']:>23.0f}")


def _run_child(args: argparse.Namespace, mode: str, clip: bytes, setting: str = "") -> dict[str, Any]:
    command = [sys.executable, "-m", "animegan.video_bench", "--child", mode, "--cpu", str(args.cpu)]
    command += ["--weights", str(args.weights), "--style", args.style, "--precision", args.precision]
    frames = {"flicker": args.flicker_frames, "sweep": args.sweep_frames, "codec": args.sweep_frames}.get(
        mode, args.frames
    )
    command += ["--frames", str(frames), "--size", setting or "-"]
    result = subprocess.run(command, input=clip, capture_output=True, check=False, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"{mode} measurement failed:\n{result.stderr.decode(errors='replace')}")
    report: dict[str, Any] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return report


def _child(args: argparse.Namespace) -> int:
    os.sched_setaffinity(0, {args.cpu})
    clip = sys.stdin.buffer.read()
    modes: dict[str, Callable[[argparse.Namespace, bytes], dict[str, Any]]] = {
        "video": _video,
        "photo": _photo,
        "sweep": _sweep,
        "codec": _codec,
        "flicker": _flicker,
    }
    report = modes[args.child](args, clip)
    report["peak_mib"] = _peak_mib()
    _say(json.dumps(report))
    return 0


def _stylizer(args: argparse.Namespace) -> Any:
    from inference.pipeline import Stylizer

    return Stylizer.load(args.style, weights_path=args.weights, threads=1, precision=args.precision)


def _video(args: argparse.Namespace, clip: bytes) -> dict[str, Any]:
    from video.segments import Segment, run_segment

    stylizer = _stylizer(args)
    in_engine = 0.0

    def stylize(frame: np.ndarray) -> np.ndarray:
        nonlocal in_engine
        started = time.perf_counter()
        out: np.ndarray = stylizer.engine.run(frame)
        in_engine += time.perf_counter() - started
        return out

    started = time.perf_counter()
    run_segment(clip, Segment(0, 0, args.frames), stylize)
    seconds = time.perf_counter() - started
    return {
        "fps": args.frames / seconds,
        "engine_share": in_engine / seconds,
        "precision": str(stylizer.precision),
        "runtime": stylizer.engine.runtime_name,
    }


def _photo(args: argparse.Namespace, clip: bytes) -> dict[str, Any]:
    # Photos as a worker runs them: the frames arrive as pixels (no video library in this process),
    # a few held at a time, as a worker holds one photo.
    frames = _frames_as_photos(clip, min(args.frames, 4))
    stylizer = _stylizer(args)
    started = time.perf_counter()
    for index in range(args.frames):
        stylizer.engine.run(frames[index % len(frames)])
    return {"fps": args.frames / (time.perf_counter() - started)}


def _frames_as_photos(clip: bytes, count: int) -> list[np.ndarray]:
    command = [sys.executable, "-c", _DECODE_SCRIPT, str(count)]
    result = subprocess.run(command, input=clip, capture_output=True, check=True, timeout=600)
    shape = tuple(int(side) for side in result.stderr.decode().split()[-3:])
    pixels = np.frombuffer(result.stdout, np.uint8).reshape((-1, *shape))
    return [pixels[i] for i in range(pixels.shape[0])]


_DECODE_SCRIPT = """
import sys
from video.segments import still_frame
clip = sys.stdin.buffer.read()
for index in range(int(sys.argv[1])):
    frame = still_frame(clip, index)
    sys.stdout.buffer.write(frame.tobytes())
sys.stderr.write(" ".join(map(str, frame.shape)))
"""


def _sweep(args: argparse.Namespace, clip: bytes) -> dict[str, Any]:
    from video.encoding import Encoding, PieceWriter
    from video.picture import to_encoder
    from video.segments import still_frame

    stylizer = _stylizer(args)
    started = time.perf_counter()
    stylized = [stylizer.engine.run(still_frame(clip, i)) for i in range(args.frames)]
    engine_s = (time.perf_counter() - started) / len(stylized)
    rows = []
    for preset, crf in SETTINGS:
        times, piece = [], b""
        for _ in range(3):
            writer = PieceWriter(stylized[0].shape[1::-1], Fraction(1, 30), Fraction(30), Encoding(preset, crf))
            started = time.perf_counter()
            for index, frame in enumerate(stylized):
                writer.write(to_encoder(frame, 0), index, 1)
            piece = writer.finish()
            times.append((time.perf_counter() - started) / len(stylized))
        decoded = _decode_all(piece)
        psnr = statistics.mean(_psnr(a, b) for a, b in zip(stylized, decoded, strict=True))
        rows.append(
            {
                "preset": preset,
                "crf": crf,
                "encode_ms": 1000 * min(times),
                "bytes": len(piece) / len(stylized),
                "psnr": psnr,
            }
        )
    return {"frames": len(stylized), "engine_s": engine_s, "rows": rows}


def _codec(args: argparse.Namespace, clip: bytes) -> dict[str, Any]:
    from video.encoding import Encoding
    from video.segments import Segment, run_segment

    preset, crf = args.size.split(":")
    run_segment(clip, Segment(0, 0, args.frames), lambda frame: frame, encoding=Encoding(preset, int(crf)))
    return {}


def _flicker(args: argparse.Namespace, clip: bytes) -> dict[str, Any]:
    from video.flicker import measure_flicker
    from video.join import join_pieces
    from video.probe import probe
    from video.segments import Segment, run_segment

    stylizer = _stylizer(args)
    pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def stylize(frame: np.ndarray) -> np.ndarray:
        out: np.ndarray = stylizer.engine.run(frame)
        pairs.append((frame, out))
        return out

    # One segment over the whole clip, so the join has every frame.
    piece = run_segment(clip, Segment(0, 0, probe(clip).frame_count), stylize)
    output = _decode_all(join_pieces([piece], clip))
    raw = measure_flicker(pairs)
    coded = measure_flicker(zip((p[0] for p in pairs), output, strict=True))
    return {
        "pairs": coded.pairs,
        "input": coded.input_change,
        "output": coded.output_change,
        "ratio": coded.ratio,
        "raw_output": raw.output_change,
        "raw_ratio": raw.ratio,
    }


def _decode_all(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data), "r") as media:
        return [frame.to_ndarray(format="rgb24") for frame in media.decode(video=0)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _rounds(reports: list[dict[str, Any]]) -> str:
    return ", ".join(f"{report['fps']:.3f}" for report in reports)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
