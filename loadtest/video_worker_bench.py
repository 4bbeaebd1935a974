"""The worker side of ``loadtest.video_bench``: a pool child's task body on 720p work, and clips across workers.

``run_worker``: per round, the gateway stores a 2-second 1280x720 clip (one segment) and a 1280x720
photo; a fresh process pinned to one core (``--child``) loads the engine with one thread, as a pool
child does, and runs the queued jobs through ``worker.tasks.run_job``: the segment, its join, the
photo. For each job it records the wall time and the peak RSS (``telemetry.peak_rss.PeakRss``, what a
worker reports per job), then runs the engine alone on the clip's frames as photos. Video frames per
second are the segment's frames over its run (claim, range reads from Redis, decode, engine, encode,
store); the engine's photo throughput is measured in the same process right after.

``clip_through_workers``: the production gateway and ``workers`` production worker processes (one
child, one engine thread each, each pinned to its own core with ``taskset``); seconds from POST
/videos to the job's success.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
from PIL import Image

from animegan.serve import worker_command
from loadtest.video_clips import pan_clip
from loadtest.video_stack import gateway, service_env

ROOT = Path(__file__).resolve().parents[1]


def run_worker(args: argparse.Namespace, say: Callable[[str], None], machine: Callable[[], str]) -> None:
    clips = [pan_clip(2.0, seed=seed) for seed in (1, 2)]
    side = str(args.side)
    env = service_env(ANIMEGAN_MAX_SIDE=side, ANIMEGAN_VIDEO_MAX_SIDE=side)
    say(machine())
    say(f"clips of 1280x720 and photos of their frames, both at longest side {side} (what the engine sees)")
    with tempfile.TemporaryDirectory(prefix="animegan-video-bench-") as tmp, gateway(env, Path(tmp), "redis") as parts:
        base, _, url = parts
        reports = [_round(base, url, clips, round_, args.cpu, args.side, say) for round_ in range(args.rounds)]
    median = {key: statistics.median(r[key] for r in reports) for key in reports[0]}
    say(f"median: {_line(median)}")
    say(
        f"video at {median['share']:.3f} of the engine's throughput within the segment runs; across jobs "
        f"{median['segment_fps'] / median['photo_fps']:.3f} of the photos' (target >= 0.90)"
    )
    video_peak = max(median["segment_peak_mib"], median["join_peak_mib"])
    say(
        f"peak RSS per job, warm process: segment {median['segment_peak_mib']:.0f} MiB, join "
        f"{median['join_peak_mib']:.0f} MiB, photo {median['photo_peak_mib']:.0f} MiB: video - photo "
        f"{video_peak - median['photo_peak_mib']:+.0f} MiB (target <= +64)"
    )
    say(machine())


def _round(
    base: str, url: str, clips: list[bytes], round_: int, cpu: int, side: int, say: Callable[[str], None]
) -> dict[str, float]:
    """Queue photo, clip, photo, clip (distinct ones each round); a fresh process runs them all in turn."""
    for index, clip in enumerate(clips):
        _submit(base, clip, _photo_of(clip, 10 + round_ * 7 + index, side))
    command = [sys.executable, "-m", "loadtest.video_worker_bench", "--child", url, "--cpu", str(cpu)]
    done = subprocess.run(command, capture_output=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-2000:])
    jobs: list[dict[str, Any]] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    # The second job of each kind: the process is warm, as a pool child is after its first jobs.
    warm = {kind: [j for j in jobs if j["kind"] == kind][-1] for kind in ("segment", "join", "photo")}
    segment, photo = warm["segment"], warm["photo"]
    report = {
        "segment_fps": segment["frames"] / segment["seconds"],
        "share": segment["engine_s"] / segment["seconds"],
        "photo_fps": 1 / photo["seconds"],
        "segment_peak_mib": segment["peak_mib"],
        "join_peak_mib": warm["join"]["peak_mib"],
        "photo_peak_mib": photo["peak_mib"],
        "cold_segment_peak_mib": next(j for j in jobs if j["kind"] == "segment")["peak_mib"],
        "cold_photo_peak_mib": next(j for j in jobs if j["kind"] == "photo")["peak_mib"],
    }
    say(_line(report) + f"  (jobs in turn: {', '.join(j['kind'] for j in jobs)})")
    return report


def _photo_of(clip: bytes, index: int, side: int) -> bytes:
    """Frame ``index`` of the clip as a JPEG, as a segment hands it to the engine (longest side ``side``)."""
    from video.probe import Limits
    from video.segments import still_frame

    buffer = io.BytesIO()
    Image.fromarray(still_frame(clip, index, limits=Limits(max_side=side))).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _submit(base: str, clip: bytes, photo: bytes) -> None:
    image = httpx.post(f"{base}/stylize", files={"image": ("p.jpg", photo, "image/jpeg")}, timeout=120)
    video = httpx.post(f"{base}/videos", files={"video": ("clip.mp4", clip, "video/mp4")}, timeout=120)
    if video.status_code != 202 or image.status_code != 202:
        raise RuntimeError(f"submit answered {video.status_code} / {image.status_code}: {video.text[:200]}")


def _line(report: dict[str, float]) -> str:
    return (
        f"segment {report['segment_fps']:.3f} frames/s (engine {report['share']:.3f} of its time), photo "
        f"{report['photo_fps']:.3f}/s; peak RSS segment {report['segment_peak_mib']:.0f} MiB, join "
        f"{report['join_peak_mib']:.0f} MiB, photo {report['photo_peak_mib']:.0f} MiB (cold: segment "
        f"{report['cold_segment_peak_mib']:.0f}, photo {report['cold_photo_peak_mib']:.0f})"
    )


def child(url: str, cpu: int) -> list[dict[str, Any]]:
    """The measuring process: the task body on every queued job in turn, as a pool child runs them."""
    os.sched_setaffinity(0, {cpu})
    from jobstore.keys import job_key
    from jobstore.records import JobKind, JobRecord
    from telemetry.peak_rss import PeakRss
    from worker import leases
    from worker.config import WorkerSettings
    from worker.runtime import Runtime
    from worker.tasks import claim, run_claimed

    weights = ROOT.parent / "shared" / "weights"
    settings = WorkerSettings(redis_url=url, weights_dir=weights, styles=["hayao"], default_style="hayao", threads=1)
    runtime = Runtime(settings, concurrency=1)
    runtime.send_token = lambda job_id: None  # type: ignore[method-assign]
    runtime.load_models()
    jobs = []
    while (record := claim(runtime)) is not None:
        peak = PeakRss()
        peak.start()
        started = time.perf_counter()
        with leases.held(runtime.redis, runtime.scripts, record.id, runtime.worker_id, settings.lease_s):
            run_claimed(runtime, record)
        seconds = time.perf_counter() - started
        done = JobRecord.from_hash(runtime.redis.hgetall(job_key(record.id)))  # type: ignore[arg-type]
        kind = {JobKind.SEGMENT: "segment", JobKind.JOIN: "join"}.get(record.job_kind, "photo")
        jobs.append(
            {"kind": kind, "seconds": seconds, "peak_mib": peak.stop() / 2**20, "frames": record.frames or 1,
             "engine_s": done.inference_s or 0.0}
        )  # fmt: skip
    return jobs


def clip_through_workers(clip: bytes, workers: int, workdir: Path, env: dict[str, str]) -> float:
    """Seconds from POST /videos to success with ``workers`` single-child workers, each on its own core."""
    env = {**env, "ANIMEGAN_MAX_VIDEO_BYTES": str(256 * 2**20), "ANIMEGAN_MAX_VIDEO_SECONDS": "3600"}
    cores = sorted(os.sched_getaffinity(0))
    with gateway(env, workdir, "redis") as (base, _, url):
        worker_env = {**env, "ANIMEGAN_REDIS_URL": url, "ANIMEGAN_WORKER_CONCURRENCY": "1", "ANIMEGAN_THREADS": "1"}
        started: list[subprocess.Popen[bytes]] = []
        try:
            for index in range(workers):
                core = str(cores[-1 - index % len(cores)])
                log = (workdir / f"worker-{workers}-{index}.log").open("ab")
                started.append(
                    subprocess.Popen(["taskset", "-c", core, *worker_command()], env=worker_env, cwd=ROOT,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                )  # fmt: skip
            _wait_for_workers(url, workers)
            began = time.perf_counter()
            job = httpx.post(f"{base}/videos", files={"video": ("clip.mp4", clip, "video/mp4")}, timeout=300).json()
            while (body := httpx.get(f"{base}/jobs/{job['id']}", timeout=30).json())["status"] not in (
                "succeeded",
                "failed",
            ):
                time.sleep(0.5)
            if body["status"] != "succeeded":
                raise RuntimeError(f"the clip failed: {body.get('error')}")
            return time.perf_counter() - began
        finally:
            for process in started:
                os.killpg(process.pid, 15)
                process.wait(60)


def _wait_for_workers(url: str, count: int, timeout_s: float = 300) -> None:
    from jobstore.heartbeats import live_heartbeats
    from jobstore.keys import WORKERS_KEY

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout_s
    while len(live_heartbeats(client.hgetall(WORKERS_KEY))) < count:  # type: ignore[arg-type]
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} workers came up")
        time.sleep(0.5)


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == "--child":
    cpu = int(sys.argv[sys.argv.index("--cpu") + 1]) if "--cpu" in sys.argv else 0
    sys.stdout.write(json.dumps(child(sys.argv[2], cpu)) + "\n")
