"""Video through the service, measured (issue 25's targets), with the CPU named:

    python -m loadtest.video_bench gateway [--mib 100] [--rounds 2]   # gateway RSS for a large upload
    python -m loadtest.video_bench worker [--rounds 3]                # a worker: 720p fps and peak RSS
    python -m loadtest.video_bench scaling [--seconds 60]             # a clip on 2 workers against 1
    python -m loadtest.video_bench flicker [--frames 60]              # temporal stability of the output

``gateway``: the production gateway command with no worker (the clip's segments stay queued), on a
private Redis, and with ``--store s3`` a private SeaweedFS. Its RSS is sampled every 10 ms while a clip
of about ``--mib`` MiB (1080p, 60 s) streams in and is probed, against its RSS when idle: after start,
and after a small clip went through (imports and pools warm). Runs alternate Redis and the bucket.

``worker`` (``loadtest.video_worker_bench``): the task body in a fresh process pinned to one core, one
engine thread, as a pool child runs it: a 2-second 720p segment, its join and a 1280x720 photo, each
job's peak RSS (the kernel's peak counter reset at each job's start) and wall time; and the engine
alone on the same frames as photos.

``scaling``: a ``--seconds`` 720p clip (a pan over a real photo, 30 fps, AAC sound) through the
gateway and 1 worker process, then 2 (each one child, one thread, pinned to its own core): seconds
from submission to the result. The machine's load average is printed before and after.

``flicker``: a 720p camera pan over a real photo, and the same photo from a still camera (camera
noise only), stylized as the service does (longest side 720, the service's encoder) by
``animegan.video_bench``'s flicker measurement: the mean absolute change between consecutive frames
of the output against the input's (``video.flicker``), before and after the codec.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil

from loadtest.machine import cpu_model
from loadtest.storage_bench import peak_rss_mb
from loadtest.video_clips import large_clip, pan_clip
from loadtest.video_stack import gateway, service_env
from video.probe import Limits, probe

MiB = 2**20


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def machine_line() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        info = cpuinfo.read()
    family = next((x.split(":")[1].strip() for x in info.splitlines() if x.startswith("cpu family")), "?")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"CPU: {cpu_model(info)} (family {family}), {os.cpu_count()} CPUs; load average {load}"


class RssSampler:
    """The highest RSS of process ``pid`` while running (every ``interval_s``)."""

    def __init__(self, pid: int, interval_s: float = 0.01) -> None:
        self.process, self.interval_s, self.peak = psutil.Process(pid), interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.process.memory_info().rss)


def post_clip(base: str, data: bytes) -> tuple[int, float]:
    """POST /videos with the clip streamed in 1 MiB pieces; (status, seconds)."""

    def body() -> Iterator[bytes]:
        for start in range(0, len(data), MiB):
            yield data[start : start + MiB]

    boundary = "benchboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="clip.mp4"\r\n\r\n'.encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def form() -> Iterator[bytes]:
        yield head
        yield from body()
        yield tail

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    started = time.perf_counter()
    answer = httpx.post(f"{base}/videos", content=form(), headers=headers, timeout=600)
    if answer.status_code != 202:
        raise RuntimeError(f"POST /videos answered {answer.status_code}: {answer.text[:300]}")
    return answer.status_code, time.perf_counter() - started


def run_gateway(args: argparse.Namespace) -> None:
    clip = large_clip(args.mib)
    small = pan_clip(2.0, 320, 180)
    say(machine_line())
    seconds = float(probe(clip, Limits(max_bytes=1 << 40)).duration)
    limit = args.mib + 28
    say(f"clip: {len(clip) / MiB:.1f} MiB of 1920x1080, {seconds:.1f} s; the gateway's limit set to {limit:.0f} MiB")
    env = service_env(ANIMEGAN_MAX_VIDEO_BYTES=str(int((args.mib + 28) * MiB)))
    rows: list[tuple[str, float, float, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="animegan-video-bench-") as tmp:
        for _ in range(args.rounds):
            for store in args.stores:
                with gateway(env, Path(tmp), store) as (base, pid, _):
                    time.sleep(1.0)
                    cold = psutil.Process(pid).memory_info().rss / MiB
                    post_clip(base, small)
                    time.sleep(1.0)
                    warm = psutil.Process(pid).memory_info().rss / MiB
                    with RssSampler(pid) as sampler:
                        _, seconds = post_clip(base, clip)
                    peak = sampler.peak / MiB
                    rows.append((store, cold, warm, peak, peak_rss_mb(pid), seconds))
                growth = f"+{peak - warm:5.1f} MiB over warm idle, +{peak - cold:5.1f} over cold"
                say(
                    f"{store:5}  idle {cold:6.1f} MiB (warm {warm:6.1f})  during the upload {peak:6.1f} MiB  "
                    f"{growth}  (VmHWM {rows[-1][4]:6.1f})  upload + probe + admit {seconds:5.1f} s"
                )
    for store in args.stores:
        mine = [r for r in rows if r[0] == store]
        growth = statistics.median(r[3] - r[2] for r in mine)
        cold_growth = statistics.median(r[3] - r[1] for r in mine)
        say(f"median {store}: +{growth:.1f} MiB over warm idle, +{cold_growth:.1f} over cold idle (target <= +32 MB)")
    say(machine_line())


def run_scaling(args: argparse.Namespace) -> None:
    from loadtest.video_worker_bench import clip_through_workers

    clip = pan_clip(args.seconds)
    say(machine_line())
    say(f"clip: {args.seconds:g} s of 1280x720 at 30 fps with AAC sound, {len(clip) / MiB:.1f} MiB")
    results: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="animegan-video-bench-") as tmp:
        for workers in args.workers:
            results[workers] = clip_through_workers(clip, workers, Path(tmp), service_env())
            say(f"{workers} worker(s): {results[workers]:7.1f} s  ({machine_line()})")
    if 1 in results and 2 in results:
        say(f"2 workers / 1 worker: {results[2] / results[1]:.3f} (target <= 0.55)")


def run_flicker(args: argparse.Namespace) -> None:
    import json
    import subprocess

    from animegan.video_bench import make_clip
    from loadtest.video_clips import SAMPLE

    weights = Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "hayao.pt"
    say(machine_line())
    for name, moving in (("panning camera", True), ("still camera, noise only", False)):
        clip = make_clip(SAMPLE, 1280, 720, args.frames, moving=moving)
        command = [sys.executable, "-m", "animegan.video_bench", "--child", "flicker", "--cpu", "1"]
        command += ["--weights", str(weights), "--style", "hayao", "--frames", str(args.frames), "--size", "-"]
        done = subprocess.run(command, input=clip, capture_output=True, check=True, timeout=3600)
        found = json.loads(done.stdout.decode().strip().splitlines()[-1])
        say(
            f"{name}, {found['pairs']} frame pairs (1280x720 at longest side 720): input change "
            f"{found['input']:.3f}, output {found['output']:.3f} (x{found['ratio']:.2f} the input's); stylized "
            f"frames before the codec {found['raw_output']:.3f} (x{found['raw_ratio']:.2f})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.video_bench", description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    gw = modes.add_parser("gateway", help="the gateway's RSS for a large upload")
    gw.add_argument("--mib", type=float, default=100.0)
    gw.add_argument("--rounds", type=int, default=2)
    gw.add_argument("--stores", nargs="+", default=["redis", "s3"], choices=["redis", "s3"])
    worker = modes.add_parser("worker", help="a worker's 720p frames per second and peak RSS, video against photo")
    worker.add_argument("--rounds", type=int, default=3)
    worker.add_argument("--cpu", type=int, default=1, help="the core the measuring process is pinned to")
    worker.add_argument("--side", type=int, default=1280, help="longest side of the frames (default 1280: 720p)")
    scaling = modes.add_parser("scaling", help="a clip's time on 2 workers against 1")
    scaling.add_argument("--seconds", type=float, default=60.0)
    scaling.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    flicker = modes.add_parser("flicker", help="flicker of the stylized output against the input's")
    flicker.add_argument("--frames", type=int, default=60)
    args = parser.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], None]] = {
        "gateway": run_gateway,
        "scaling": run_scaling,
        "flicker": run_flicker,
    }
    if args.mode == "worker":
        from loadtest.video_worker_bench import run_worker

        run_worker(args, say, machine_line)
    else:
        handlers[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
