"""Clips through the whole service: the production gateway and two worker processes (prefork, the real hayao
weights) on a Redis of this module's own, real HTTP.

Clips made here with PyAV (H.264+AAC, VP9+Opus, rotated, variable frame rate) come back with exactly their
frames, timestamps, durations and rotation, their sound copied bit for bit, a frame as the still stylization
of the same decoded frame; segments run on both workers; a worker killed mid-clip costs its segment only;
garbage, truncated, oversize and too-long clips are refused with problems and leave nothing stored; another
client's photo sent after a long clip starts before the clip's later segments; nothing is written to a
temporary file; events, DELETE and ranges work for videos as for photos.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import redis

from animegan.redis_server import RedisServer
from api.tenancy.keys import key_digest
from jobstore.keys import job_key
from jobstore.records import JobRecord
from loadtest.tempfiles import TempWatch
from video.probe import probe
from video.segments import still_frame

WEIGHTS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "weights"
KEYS = {"alice": "agk_alice-key-for-the-video-tests", "bob": "agk_bob-key-for-the-video-tests"}
Make = Callable[..., bytes]
MAX_VIDEO_BYTES = 4 << 20
LEASE_S = 3.0


class Stack:
    def __init__(self, base: str, url: str, workers: list[Any], api: Any, tmpdir: Path, env: dict[str, str]) -> None:
        self.base, self.url, self.workers, self.api, self.tmpdir, self.env = base, url, workers, api, tmpdir, env
        self.redis = redis.Redis.from_url(url)
        self.http = httpx.Client(base_url=base, timeout=60, headers=_as("alice"))

    def processes(self) -> list[psutil.Process]:
        pids = [w.pid for w in self.workers] + [self.api.process.pid]
        found = []
        for pid in pids:
            parent = psutil.Process(pid)
            found += [parent, *parent.children(recursive=True)]
        return found

    def submit(self, data: bytes, who: str = "alice", name: str = "clip.mp4") -> httpx.Response:
        files = {"video": (name, data, "application/octet-stream")}
        return self.http.post("/videos", files=files, data={"style": "hayao"}, headers=_as(who))

    def wait(self, job_id: str, timeout_s: float = 240, who: str = "alice") -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            body: dict[str, Any] = self.http.get(f"/jobs/{job_id}", headers=_as(who)).json()
            if body["status"] in ("succeeded", "failed"):
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.2)

    def record(self, job_id: str) -> JobRecord:
        return JobRecord.from_hash(self.redis.hgetall(job_key(job_id)))  # type: ignore[arg-type]


def _as(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    """This module's own Redis; set up before the processes that use it, so it stops after them."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    module_redis: RedisServer,
    spawn_module_worker: Callable[..., Any],
    spawn_module_api: Callable[..., Any],
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("videos")
    tmpdir = folder / "tmp"
    tmpdir.mkdir()
    keys = folder / "keys"
    keys.write_text("".join(f"{name} {key_digest(key)}\n" for name, key in KEYS.items()))
    env = {
        "TMPDIR": str(tmpdir),
        "ANIMEGAN_THREADS": "1",
        "ANIMEGAN_LEASE_S": str(LEASE_S),
        "ANIMEGAN_SWEEP_INTERVAL_S": "0.5",
        "ANIMEGAN_MAX_VIDEO_BYTES": str(MAX_VIDEO_BYTES),
        "ANIMEGAN_MAX_VIDEO_SECONDS": "20",
        "ANIMEGAN_MAX_QUEUED_PER_CLIENT": "8",
        "ANIMEGAN_API_KEYS_FILE": str(keys),
    }
    url = module_redis.url
    workers = [spawn_module_worker(url, **env) for _ in range(2)]
    api = spawn_module_api(url, **env)
    stack = Stack(api.base, url, workers, api, tmpdir, env)
    yield stack
    stack.http.close()
    stack.redis.close()


def _seconds(info: Any) -> list[Fraction]:
    return [p * info.frames.time_base for p in info.frames.pts]


def _lengths(info: Any) -> list[Fraction]:
    return [d * info.frames.time_base for d in info.frames.durations]


VFR_PTS = [0, 40, 70, 150, 160, 200, 300, 310, 320, 400, 433, 500, 640, 700, 701, 760, 900, 1000, 1033, 1100]


@pytest.mark.parametrize(
    ("fields", "sound"),
    [
        ({"frames": 50, "rate": Fraction(25)}, "aac"),
        ({"frames": 40, "container": "webm", "video": "libvpx-vp9", "audio": "libopus"}, "opus"),
        ({"frames": 40, "container": "mov", "rotation": 90, "audio": "libmp3lame"}, "mp3"),
        ({"container": "mkv", "time_base": Fraction(1, 1000), "pts": VFR_PTS, "frames": len(VFR_PTS)}, "aac"),
    ],
    ids=["h264-aac-mp4", "vp9-opus-webm", "rotated-mov", "vfr-mkv"],
)
def test_a_clip_comes_back_with_its_frames_times_rotation_and_sound(
    stack: Stack,
    clip: Make,
    fields: dict[str, Any],
    sound: str,
    video_packets: Callable[..., list[tuple[Fraction, Fraction]]],
    audio_packets: Callable[..., list[tuple[bytes, Fraction, Fraction]]],
) -> None:
    data = clip(**fields)
    answer = stack.submit(data, name=f"clip.{fields.get('container', 'mp4')}")
    assert answer.status_code == 202, answer.text
    assert answer.headers["location"] == f"/jobs/{answer.json()['id']}"
    job = stack.wait(answer.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["kind"] == "video"
    assert job["progress"]["frames_done"] == job["progress"]["frames_total"] == len(probe(data).frames.pts)
    result = stack.http.get(f"/jobs/{job['id']}/result")
    assert result.status_code == 200
    assert result.headers["content-type"] == "video/mp4"
    output = result.content
    assert len(output) == job["output"]["bytes"]
    source, stylized = probe(data), probe(output)
    assert (stylized.container, stylized.video_codec, stylized.audio.codec) == ("mp4", "h264", sound)  # type: ignore[union-attr]
    assert _seconds(stylized) == _seconds(source)
    assert _lengths(stylized) == _lengths(source)
    assert stylized.duration == source.duration
    assert stylized.frame_rate == source.frame_rate
    assert (stylized.rotation, stylized.display_matrix) == (source.rotation, source.display_matrix)
    assert [p[0] for p in video_packets(output)] == [p[0] for p in video_packets(data)]
    # The sound is the clip's own packets, byte for byte, at their times (as stored, edit lists aside; WebM
    # and Matroska keep milliseconds, MP4 durations: those are compared by the video package's own tests).
    options = {} if fields.get("container") in ("webm", "mkv") else {"ignore_editlist": "1"}
    copied, original = audio_packets(output, **options), audio_packets(data, **options)
    assert len(copied) > 10
    assert [p[0] for p in copied] == [p[0] for p in original]
    if fields.get("container") != "mkv":
        assert [p[1] for p in copied] == [p[1] for p in original]
    if not options:
        return
    assert copied == original


def test_a_frame_is_the_still_stylization_of_the_same_decoded_frame(stack: Stack, clip: Make) -> None:
    from inference.pipeline import Stylizer

    data = clip(frames=30, width=128, height=96)
    job = stack.wait(stack.submit(data).json()["id"])
    output = stack.http.get(f"/jobs/{job['id']}/result").content
    stylizer = Stylizer.load("hayao", weights_dir=WEIGHTS_DIR, threads=1)
    for index in (0, 17):
        expected = stylizer.engine.run(still_frame(data, index))
        got = _decoded(output)[index]
        mse = float(np.mean((expected.astype(np.float64) - got.astype(np.float64)) ** 2))
        assert 10 * np.log10(255.0**2 / max(mse, 1e-9)) >= 28.0


def _decoded(data: bytes) -> list[np.ndarray]:
    import io

    import av

    with av.open(io.BytesIO(data)) as media:
        return [frame.to_ndarray(format="rgb24") for frame in media.decode(video=0)]


def test_segments_run_on_both_workers_and_no_file_is_written(stack: Stack, clip: Make) -> None:
    data = clip(frames=120, rate=Fraction(10), gop=10)  # 12 s: 6 segments
    watch = TempWatch(private=stack.tmpdir)
    processes = stack.processes()
    watch.baseline(processes)
    job_id = stack.submit(data).json()["id"]
    while stack.http.get(f"/jobs/{job_id}").json()["status"] not in ("succeeded", "failed"):
        watch.observe(processes)
        time.sleep(0.05)
    job = stack.wait(job_id)
    report = watch.finish(processes)
    assert job["status"] == "succeeded"
    assert len(job["segments"]) == 6
    workers = {s["worker"] for s in job["segments"]}
    children = {f"{socket.gethostname()}:{p.pid}" for w in stack.workers for p in psutil.Process(w.pid).children()}
    assert len(workers) == 2, job["segments"]
    assert workers <= children
    assert report.stack_files == [], report
    # (Celery's prefork pool keeps an empty multiprocessing folder there from its start.)
    assert not [path for path in stack.tmpdir.rglob("*") if path.is_file()]


def test_a_worker_killed_mid_clip_costs_only_its_segment(
    stack: Stack, clip: Make, spawn_worker: Callable[..., Any]
) -> None:
    extra = spawn_worker(stack.url, **stack.env)
    names = {f"{socket.gethostname()}:{p.pid}" for p in psutil.Process(extra.pid).children()}
    data = clip(frames=160, rate=Fraction(10), gop=10, width=160, height=112)  # 16 s: 8 segments
    job_id = stack.submit(data).json()["id"]
    deadline = time.monotonic() + 120
    victim = None
    while victim is None:
        assert time.monotonic() < deadline, "the third worker never took a segment"
        body = stack.http.get(f"/jobs/{job_id}").json()
        victim = next((s for s in body["segments"] if s["status"] == "running" and s["worker"] in names), None)
        time.sleep(0.05)
    os.killpg(extra.pid, signal.SIGKILL)
    job = stack.wait(job_id)
    assert job["status"] == "succeeded", job
    assert job["progress"]["frames_done"] == 160
    segment = stack.record(f"{job_id}-s{victim['index']}")
    assert segment.attempts == 2  # the killed run, then one more
    assert job["segments"][victim["index"]]["worker"] not in names
    assert sum(stack.record(f"{job_id}-s{n}").attempts for n in range(8)) == 9  # no other segment ran twice
    output = stack.http.get(f"/jobs/{job_id}/result").content
    assert _seconds(probe(output)) == _seconds(probe(data))


def test_another_clients_photo_starts_before_the_clips_later_segments(
    stack: Stack, clip: Make, photo: Callable[[], bytes]
) -> None:
    job_id = stack.submit(clip(frames=120, rate=Fraction(10), gop=10)).json()["id"]  # 6 segments
    answer = stack.http.post(
        "/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")}, data={"style": "hayao"}, headers=_as("bob")
    )
    assert answer.status_code == 202, answer.text
    photo_job = stack.wait(answer.json()["id"], who="bob")
    stack.wait(job_id)
    photo_start = stack.record(photo_job["id"]).started_at
    assert photo_start is not None
    starts = sorted(stack.record(f"{job_id}-s{n}").started_at or 0 for n in range(6))
    before = sum(1 for start in starts if start < photo_start)
    # Two workers take the clip's first two segments, round-robin gives the clip one more turn at most:
    # the photo never waits for the clip's other segments.
    assert before <= 3, (before, starts, photo_start)


def test_events_follow_a_videos_segments_to_its_end(stack: Stack, clip: Make) -> None:
    job_id = stack.submit(clip(frames=60, rate=Fraction(10), gop=10)).json()["id"]
    events: list[tuple[str, dict[str, Any]]] = []
    with stack.http.stream("GET", f"/jobs/{job_id}/events", timeout=120) as stream:
        name = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                if name in ("succeeded", "failed"):
                    break
    assert events[-1][0] == "succeeded"
    done = [body["progress"]["frames_done"] for _, body in events]
    assert done == sorted(done)
    assert done[-1] == 60
    assert any(name == "running" and 0 < body["progress"]["frames_done"] < 60 for name, body in events)


def test_a_result_answers_byte_ranges_and_delete_forgets_the_video(stack: Stack, clip: Make) -> None:
    job_id = stack.submit(clip(frames=30)).json()["id"]
    stack.wait(job_id)
    whole = stack.http.get(f"/jobs/{job_id}/result")
    assert whole.headers["accept-ranges"] == "bytes"
    part = stack.http.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(whole.content)}"
    assert part.content == whole.content[100:1100]
    past = stack.http.get(f"/jobs/{job_id}/result", headers={"Range": f"bytes={len(whole.content)}-"})
    assert past.status_code == 416
    assert past.headers["content-type"] == "application/problem+json"
    assert stack.http.delete(f"/jobs/{job_id}").status_code == 204
    assert stack.http.get(f"/jobs/{job_id}").status_code == 404
    assert not stack.redis.keys(f"animegan:*{job_id}*")


def test_a_clip_segment_is_not_a_job_clients_can_read(stack: Stack, clip: Make) -> None:
    job_id = stack.submit(clip(frames=30)).json()["id"]
    stack.wait(job_id)
    assert stack.http.get(f"/jobs/{job_id}-s0").status_code == 404


@pytest.mark.parametrize(
    ("make", "status", "slug"),
    [
        (lambda clip: b"GIF89a" + bytes(5000), 415, "unsupported-video"),
        (lambda clip: b"just some text, not a clip at all", 415, "unsupported-video"),
        (lambda clip: clip(frames=30)[:6000], 422, "invalid-video"),
        (lambda clip: clip(frames=50, rate=Fraction(2), audio=None), 422, "video-too-long"),  # 25 s > 20 s
        (lambda clip: clip(frames=36, rate=Fraction(2), audio=None), 422, "video-too-long"),  # 18 s: 9 segments > 8
        (lambda clip: clip(frames=4, width=4098, height=2160, audio=None), 422, "video-frames-too-large"),
    ],
    ids=["gif", "text", "truncated", "too-long", "too-many-segments", "8k-frames"],
)
def test_bad_clips_are_refused_with_problems_and_nothing_is_stored(
    stack: Stack, clip: Make, make: Callable[[Make], bytes], status: int, slug: str
) -> None:
    before = set(stack.redis.keys("animegan:*"))
    answer = stack.submit(make(clip))
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == f"/problems/{slug}"
    assert not {k for k in set(stack.redis.keys("animegan:*")) - before if b"rate:" not in k}


def test_an_oversize_clip_is_refused_before_its_body_is_read(stack: Stack) -> None:
    host, port = stack.base.removeprefix("http://").split(":")
    # A declared length over the limit: refused from the headers, before a byte of the body.
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            f"POST /videos HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEYS['alice']}\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {2 * MAX_VIDEO_BYTES}\r\n\r\n".encode()
        )
        declared = _answer(conn)
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
    assert b"/problems/video-too-large" in declared
    # Chunked (no length): refused once the clip passes the limit, the rest never sent.
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        boundary = "b0undary"
        head = (
            f"POST /videos HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEYS['alice']}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        conn.sendall(head.encode())
        part = f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="c.mp4"\r\n\r\n'.encode()
        conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        answer = b""
        stop = threading.Event()

        def read() -> None:
            nonlocal answer
            answer = _answer(conn)
            stop.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        chunk = bytes(256 * 1024)
        while not stop.is_set() and sent < 8 * MAX_VIDEO_BYTES:
            try:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
            sent += len(chunk)
        reader.join(30)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"/problems/video-too-large" in answer
    assert sent < 3 * MAX_VIDEO_BYTES  # refused on the way, not after the whole body
    assert not stack.redis.keys("animegan:clip:*")


def _answer(conn: socket.socket) -> bytes:
    """What the server answers, read until it closes the connection (it does after a 413)."""
    answer = b""
    with contextlib.suppress(OSError):
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_the_python_client_sends_a_clip_from_a_path_and_a_file_and_gets_its_mp4(
    stack: Stack, clip: Make, tmp_path: Path
) -> None:
    import anyio

    from animegan.client import AsyncClient, Client

    data = clip(frames=40, container="webm", video="libvpx-vp9", audio="libopus")
    path = tmp_path / "clip.webm"
    path.write_bytes(data)
    with Client(stack.base, api_key=KEYS["alice"]) as client:
        output = client.video(path, style="hayao", timeout=240)
        with path.open("rb") as file:
            job = client.wait(client.submit_video(file), timeout=240)
    assert _seconds(probe(output)) == _seconds(probe(data))
    assert job.kind == "video"
    assert job.progress is not None
    assert job.progress.frames_done == job.progress.frames_total == 40
    assert {s.status for s in job.segments} == {"succeeded"}
    assert all(s.worker for s in job.segments)

    async def with_async() -> bytes:
        async with AsyncClient(stack.base, api_key=KEYS["alice"]) as client:
            return await client.video(data, timeout=240)

    assert _seconds(probe(anyio.run(with_async))) == _seconds(probe(data))
