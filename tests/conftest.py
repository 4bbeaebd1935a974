"""Suite-wide fixtures and markers: a test's marker comes from its folder.

Besides the sample photos and the real weights, this holds the real parts the integration and
end-to-end tests run against, shared by both folders:

- ``redis_server`` (session): a memory-only Redis from ``animegan.redis_server``; ``redis_url`` gives
  each test a freshly flushed database of its own (no worker listens there), ``worker_redis_url``
  the database of the session's real worker (``celery_worker``: the production command, prefork,
  one child, real hayao weights).
- ``spawn_worker(redis_url, extra_args, **env)``: a worker of a test's own, stopped after the test
  (``spawn_module_worker``: the same, kept for a whole test module).
- ``start_api(redis_url=..., **settings)``: the gateway in this process on a real socket (uvicorn
  in a thread); ``spawn_api(redis_url, **env)``: the production API command as a process of its own
  (``spawn_module_api``: the same, kept for a whole test module).
- ``durable_redis``: a Redis configured as documented for production (AOF, ``appendfsync
  everysec``), which a test can kill with SIGKILL and start again on the same port and files.
- ``service_env(**variables)``: the environment of a service process: this one's without any
  ``ANIMEGAN_*``/``PROMETHEUS_*`` variable, plus the real weights, the hayao style and ``variables``.
- ``queue_job(client, image, ...)``: a queued job record and its input written straight into Redis
  (what the gateway stores), for tests that drive workers without the gateway; ``queue_video(client,
  clip, ...)`` the same for a video (its clip's chunks, its probe, its queued segments).
- ``photo()``: a real photo as JPEG bytes, different on every call.
- ``clip(**fields)``: a clip encoded in memory with PyAV (a gradient and a square that move every frame,
  a sine tone for sound): any container, codecs, frame times, rotation and keyframe interval a test
  needs (``Clip``); ``video_packets``, ``audio_packets`` and ``decoded_frames`` read results back.
- ``queue_job(..., store=object_store)`` puts the input in the bucket as the gateway does with an
  object store (the store's fixtures: ``tests/integration/conftest.py``).

Test modules use these fixtures rather than importing from here, so any pytest import mode works.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import redis
import uvicorn
from PIL import Image

from animegan.redis_server import RedisServer, free_port
from animegan.serve import api_command, worker_command
from jobstore.blobs import OBJECT_STORE, put_input
from jobstore.heartbeats import live_heartbeats
from jobstore.keys import WORKERS_KEY, clip_chunk_key
from jobstore.objectstore import ObjectStore
from jobstore.queue import Limits, QueueScripts, admit_call, parse_admitted, request_digest
from jobstore.records import JobRecord, JobState, new_job_id, now
from jobstore.video_blobs import CHUNK_BYTES, encode_info
from jobstore.video_scripts import ADMIT_VIDEO
from jobstore.videos import VideoTtls, admit_video_call, parse_video_admitted, segment_records, video_record
from video.probe import probe
from video.segments import plan_segments
from video.source import ByteReader

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SAMPLES_DIR = SHARED / "samples"
WEIGHTS_DIR = SHARED / "weights"
HAYAO_WEIGHTS = WEIGHTS_DIR / "hayao.pt"
WORKER_DB = 0
_databases = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in {"unit", "integration", "e2e"}:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    assert SAMPLES_DIR.is_dir(), f"sample photos expected in {SAMPLES_DIR}"
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def hayao_weights() -> Path:
    assert HAYAO_WEIGHTS.is_file(), f"real weights expected at {HAYAO_WEIGHTS}"
    return HAYAO_WEIGHTS


# -- Redis ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def db_url(server: RedisServer, db: int) -> str:
    return f"redis://{server.host}:{server.port}/{db}"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A flushed database no worker listens on (jobs sent there stay queued)."""
    url = db_url(redis_server, 1 + next(_databases) % 15)
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


class DurableRedis(RedisServer):
    """Redis as documented for production: AOF on, fsync every second, files in ``directory``.

    ``kill()`` is a crash (SIGKILL, no shutdown save); ``start()`` again reuses the port and the files.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def command(self) -> list[str]:
        return [
            self.executable,
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[DurableRedis]:
    directory = tmp_path / "redis-data"
    directory.mkdir()
    server = DurableRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- Celery workers ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def worker_redis_url(celery_worker: subprocess.Popen[bytes], redis_server: RedisServer) -> str:
    """The database the session's real worker consumes from."""
    return db_url(redis_server, WORKER_DB)


def make_service_env(**variables: str) -> dict[str, str]:
    """This process's environment without our settings, plus the real weights, hayao and ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMEGAN_", "PROMETHEUS_"))}
    env.update(ANIMEGAN_WEIGHTS_DIR=str(WEIGHTS_DIR), ANIMEGAN_STYLES="hayao", ANIMEGAN_DEFAULT_STYLE="hayao")
    env.update(variables)
    return env


@pytest.fixture(scope="session")
def service_env() -> Callable[..., dict[str, str]]:
    """``service_env(**variables)`` -> the environment for a service process (see ``make_service_env``)."""
    return make_service_env


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    defaults = {"ANIMEGAN_WORKER_CONCURRENCY": "1", "ANIMEGAN_HEARTBEAT_INTERVAL_S": "1"}
    return make_service_env(ANIMEGAN_REDIS_URL=redis_url, **{**defaults, **extra})


def wait_for_heartbeat(url: str, timeout_s: float = 300.0, process: subprocess.Popen[bytes] | None = None) -> None:
    with redis.Redis.from_url(url) as client:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"worker exited with {process.returncode}")
            pids = {b.pid for b in live_heartbeats(client.hgetall(WORKERS_KEY))}  # type: ignore[arg-type]
            if process is None and pids:
                return
            # A heartbeat of this worker (one of its pool children, or itself for solo/threads pools).
            if process is not None and pids & _family(process.pid):
                return
            time.sleep(0.2)
    raise TimeoutError("no worker heartbeat")


def _family(pid: int) -> set[int]:
    import psutil

    with suppress(psutil.Error):
        return {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    return {pid}


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(grace_s)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


@pytest.fixture(scope="session")
def celery_worker(redis_server: RedisServer) -> Iterator[subprocess.Popen[bytes]]:
    url = db_url(redis_server, WORKER_DB)
    process = subprocess.Popen(worker_command(), env=worker_env(url), cwd=ROOT, start_new_session=True)
    try:
        wait_for_heartbeat(url, process=process)
        yield process
    finally:
        stop_process_group(process)


WorkerFactory = Callable[..., subprocess.Popen[bytes]]


@contextmanager
def worker_processes() -> Iterator[WorkerFactory]:
    """``spawn(redis_url, extra_args, wait=True, log=None, **env)`` -> a worker process; all stopped on exit."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(
        url: str, extra: list[str] | None = None, *, wait: bool = True, log: Path | None = None, **env: str
    ) -> subprocess.Popen[bytes]:
        command = [*worker_command(), *(extra or [])]
        with ExitStack() as files:
            out = files.enter_context(log.open("ab")) if log is not None else None
            process = subprocess.Popen(
                command,
                env=worker_env(url, **env),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
            )
        started.append(process)
        if wait:
            wait_for_heartbeat(url, process=process)
        return process

    try:
        yield spawn
    finally:
        for process in started:
            stop_process_group(process)


@pytest.fixture
def spawn_worker() -> Iterator[WorkerFactory]:
    """``spawn_worker(redis_url, extra_args, wait=True, log=None, **env)`` -> a worker process (ANIMEGAN_*
    env), stopped after the test; with ``log`` its output goes to that file."""
    with worker_processes() as spawn:
        yield spawn


@pytest.fixture(scope="module")
def spawn_module_worker() -> Iterator[WorkerFactory]:
    """``spawn_worker`` for module-scoped stacks: the processes live until the module's last test."""
    with worker_processes() as spawn:
        yield spawn


# -- The gateway ---------------------------------------------------------------------------------


@contextmanager
def running_api(settings: Any) -> Iterator[str]:
    """The real gateway on a real socket (uvicorn in a thread); yields its base URL."""
    from api.main import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


ApiFactory = Callable[..., str]


@pytest.fixture
def start_api() -> Iterator[ApiFactory]:
    """``start_api(redis_url=..., **settings)`` -> base URL of a gateway with those settings."""
    from api.config import ApiSettings

    with ExitStack() as stack:

        def start(**changes: object) -> str:
            fields: dict[str, object] = {"styles": ["hayao"], "default_style": "hayao", "max_side": 128}
            fields.update(changes)
            return stack.enter_context(running_api(ApiSettings.model_validate(fields)))

        yield start


class ApiProcess:
    """The production API command (uvicorn, one process) on a fixed port; restartable."""

    def __init__(self, redis_url: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = worker_env(redis_url, **{"ANIMEGAN_MAX_SIDE": "128", **env})
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                api_command("127.0.0.1", self.port),
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the API exited; see {self.log}"
            with suppress(OSError), urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"the API did not answer /healthz; see {self.log}")

    def kill(self) -> None:
        assert self.process is not None
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, grace_s=10)


@contextmanager
def api_processes(log_dir: Path) -> Iterator[Callable[..., ApiProcess]]:
    """``spawn(redis_url, **env)`` -> a started ApiProcess (ANIMEGAN_* env); all stopped on exit."""
    started: list[ApiProcess] = []

    def spawn(url: str, **env: str) -> ApiProcess:
        api = ApiProcess(url, env, log_dir / f"api-{len(started)}.log")
        started.append(api)
        api.start()
        return api

    try:
        yield spawn
    finally:
        for api in started:
            api.stop()


@pytest.fixture
def spawn_api(tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    """``spawn_api(redis_url, **env)`` -> a started ApiProcess (ANIMEGAN_* env), stopped after the test."""
    with api_processes(tmp_path) as spawn:
        yield spawn


@pytest.fixture(scope="module")
def spawn_module_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ApiProcess]]:
    """``spawn_api`` for module-scoped stacks: the processes live until the module's last test."""
    with api_processes(tmp_path_factory.mktemp("api-logs")) as spawn:
        yield spawn


# -- Jobs written straight into the store -------------------------------------------------------


def write_queued_job(
    client: redis.Redis,
    image: Image.Image,
    *,
    style: str = "hayao",
    fmt: str = "png",
    raw: bytes | None = None,
    ttl_s: int = 60,
    age_s: float = 0.0,
    owner: str = "local",
    store: ObjectStore | None = None,
) -> JobRecord:
    """Store ``image`` as a queued job exactly as the gateway does (the job store's ADMIT script).

    ``raw`` replaces the pixel bytes (a corrupt input); ``age_s`` backdates the job's creation;
    ``owner`` is the client the job belongs to (its line in the fair queue); with ``store`` the
    input goes to the object store (``jobstore.blobs.put_input``) and Redis gets the record only.
    """
    data = image.tobytes() if raw is None else raw
    job_id = new_job_id()
    record = JobRecord(
        id=job_id,
        state=JobState.QUEUED,
        style=style,
        format=fmt,
        # Salted with the id: every call queues a job of its own, even for the same pixels.
        digest=request_digest(data + job_id.encode(), image.width, image.height, style, fmt),
        created_at=now() - age_s,
        width=image.width,
        height=image.height,
        original_width=image.width,
        original_height=image.height,
        input_ttl_s=ttl_s,
        result_ttl_s=ttl_s,
        record_ttl_s=ttl_s,
        client=owner,
        blobs=OBJECT_STORE if store is not None else None,
    )
    if store is not None:
        put_input(client, store, job_id, data, ttl_s)
    keys, args = admit_call(record, b"" if store else data, Limits(10_000, 10_000), None, record.digest)
    admitted = parse_admitted(QueueScripts(client).admit(keys=keys, args=args))
    assert admitted.outcome == "created", admitted
    return record


@pytest.fixture(scope="session")
def queue_job() -> Callable[..., JobRecord]:
    """``queue_job(client, image, style=, fmt=, raw=, ttl_s=, age_s=, owner=, store=)`` -> the JobRecord it
    stored (queued)."""
    return write_queued_job


def write_queued_video(
    client: redis.Redis,
    data: bytes,
    *,
    style: str = "hayao",
    owner: str = "local",
    ttl_s: int = 120,
    seconds: Fraction = Fraction(2),
    limits: Any = None,
    depth: int = 10_000,
    quota: int = 10_000,
) -> tuple[JobRecord, list[JobRecord], str]:
    """Store clip ``data`` as a queued video exactly as the gateway does (chunk keys, ADMIT_VIDEO), cut into
    segments of about ``seconds``; returns (video, segments, ADMIT_VIDEO's outcome)."""
    info = probe(data, limits)
    plan = plan_segments(info.frames, seconds)
    job_id = new_job_id()
    video = video_record(
        job_id, info, plan, style=style, client=owner, digest=hashlib.sha256(data).hexdigest(),
        clip_bytes=len(data), ttls=VideoTtls(ttl_s, ttl_s, ttl_s), in_bucket=False,
    )  # fmt: skip
    segments = segment_records(video, plan)
    for index, start in enumerate(range(0, len(data), CHUNK_BYTES)):
        client.set(clip_chunk_key(job_id, index), data[start : start + CHUNK_BYTES], ex=ttl_s)
    keys, args = admit_video_call(video, segments, encode_info(info), Limits(depth, quota))
    admitted = parse_video_admitted(client.register_script(ADMIT_VIDEO)(keys=keys, args=args))
    return video, segments, admitted.outcome


@pytest.fixture(scope="session")
def queue_video() -> Callable[..., tuple[JobRecord, list[JobRecord], str]]:
    """``queue_video(client, data, style=, owner=, ttl_s=, seconds=, limits=, depth=, quota=)`` -> (video,
    segments, outcome) as stored by the gateway (clip chunks in Redis, ADMIT_VIDEO)."""
    return write_queued_video


# -- Inputs --------------------------------------------------------------------------------------

_photos = itertools.count()


@pytest.fixture
def photo(samples_dir: Path) -> Callable[[], bytes]:
    """A real photo as JPEG bytes, different on every call (so no two tests share a dedup entry)."""

    def make() -> bytes:
        n = next(_photos)
        with Image.open(samples_dir / "chelsea.jpg") as img:
            image = img.convert("RGB").resize((192, 128))
        image.paste((n * 37 % 256, n * 91 % 256, n * 13 % 256), (0, 0, 24, 24))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95)
        return buffer.getvalue()

    return make


# -- Clips, made in memory with PyAV ------------------------------------------------------------

FORMATS = {"mp4": "mp4", "mov": "mov", "webm": "webm", "mkv": "matroska"}


@dataclass(frozen=True)
class Clip:
    """How to make a test clip: ``pts`` (in ``time_base``) gives a variable frame rate."""

    container: str = "mp4"
    video: str = "libx264"
    audio: str | None = "aac"
    width: int = 96
    height: int = 64
    frames: int = 30
    rate: Fraction = Fraction(30)
    time_base: Fraction | None = None
    pts: Sequence[int] | None = None
    gop: int = 12
    bframes: int = 2
    rotation: int | None = None
    sample_rate: int = 48_000
    faststart: bool = False


def picture(index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of the test pattern: smooth gradients plus a square that moves."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack(
        [
            (xx * 255 // max(1, width - 1) + index * 4) % 256,
            yy * 255 // max(1, height - 1),
            (xx + yy + index * 6) % 256,
        ],
        -1,
    ).astype(np.uint8)
    side = max(4, min(width, height) // 4)
    x = (index * 3) % max(1, width - side)
    image[height // 3 : height // 3 + side, x : x + side] = (250, 40, 40)
    return image


def make_clip(spec: Clip) -> bytes:
    buffer = io.BytesIO()
    options = {"movflags": "+faststart"} if spec.faststart else {}
    # faststart rereads the output: FFmpeg reopens it, here a reader over the same buffer.
    reopen = (lambda url, flags, opts: ByteReader(buffer)) if spec.faststart else None
    with av.open(buffer, "w", format=FORMATS[spec.container], options=options, io_open=reopen) as output:
        video = _video_stream(output, spec)
        audio = _audio_stream(output, spec) if spec.audio else None
        time_base = spec.time_base or 1 / spec.rate
        pts = list(spec.pts) if spec.pts is not None else [round(i / spec.rate / time_base) for i in range(spec.frames)]
        for index, at in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(picture(index, spec.width, spec.height), format="rgb24")
            frame.pts = at
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        if audio is not None:
            end = (pts[-1] + (pts[-1] - pts[-2] if len(pts) > 1 else 1)) * time_base
            _write_tone(output, audio, spec.sample_rate, float(end))
    return buffer.getvalue()


def _video_stream(output: av.container.OutputContainer, spec: Clip) -> Any:
    options: dict[str, str] = {"g": str(spec.gop)}
    if spec.video == "libx264":
        options["x264-params"] = f"bframes={spec.bframes}:keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0"
    if spec.video == "libx265":
        options["x265-params"] = f"bframes={spec.bframes}:keyint={spec.gop}:log-level=error"
    if spec.video == "libsvtav1":
        options["svtav1-params"] = f"keyint={spec.gop}"
        options["preset"] = "12"
    stream = output.add_stream(spec.video, rate=spec.rate, options=options)
    stream.width, stream.height = spec.width, spec.height
    stream.pix_fmt = "yuvj420p" if spec.video == "mjpeg" else "yuv420p"
    stream.codec_context.time_base = spec.time_base or 1 / spec.rate
    if spec.rotation is not None:
        stream.set_display_rotation(spec.rotation)
    return stream


def _audio_stream(output: av.container.OutputContainer, spec: Clip) -> Any:
    stream = output.add_stream(spec.audio, rate=spec.sample_rate)
    stream.codec_context.layout = "stereo"
    return stream


def _write_tone(output: av.container.OutputContainer, stream: Any, rate: int, seconds: float) -> None:
    total = round(rate * seconds)
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    for start in range(0, total, 1024):
        t = np.arange(start, min(total, start + 1024)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, start
        if fmt != "fltp":
            frame = av.AudioResampler(format=fmt, layout="stereo", rate=rate).resample(frame)[0]
            frame.pts = start
        output.mux(stream.encode(frame))
    output.mux(stream.encode(None))


@pytest.fixture
def clip() -> Callable[..., bytes]:
    """``clip(**fields)``: the bytes of ``Clip(**fields)``."""
    return lambda **fields: make_clip(Clip(**fields))


def _video_packets(data: bytes, **options: str) -> list[tuple[Fraction, Fraction]]:
    """(pts, duration) in seconds of every shown video frame, in presentation order."""
    with av.open(io.BytesIO(data), options=options) as media:
        stream = media.streams.video[0]
        tb = Fraction(stream.time_base)
        found = [
            (p.pts * tb, (p.duration or 0) * tb)
            for p in media.demux(stream)
            if p.size and not p.is_discard and p.pts is not None
        ]
    return sorted(found)


def _audio_packets(data: bytes, **options: str) -> list[tuple[bytes, Fraction, Fraction]]:
    """(bytes, pts, duration) in seconds of every audio packet (``ignore_editlist="1"``: as stored)."""
    with av.open(io.BytesIO(data), options=options) as media:
        stream = media.streams.audio[0]
        tb = Fraction(stream.time_base)
        return [
            (bytes(p), p.pts * tb, (p.duration or 0) * tb) for p in media.demux(stream) if p.size and p.pts is not None
        ]


def _decoded_frames(data: bytes) -> list[np.ndarray]:
    """Every video frame of ``data`` as stored (no rotation), RGB."""
    with av.open(io.BytesIO(data)) as media:
        return [frame.to_ndarray(format="rgb24") for frame in media.decode(video=0)]


@pytest.fixture
def video_packets() -> Callable[..., list[tuple[Fraction, Fraction]]]:
    """(pts, duration) in seconds of every shown video frame of a clip's bytes, in presentation order."""
    return _video_packets


@pytest.fixture
def audio_packets() -> Callable[..., list[tuple[bytes, Fraction, Fraction]]]:
    """(bytes, pts, duration) in seconds of every audio packet (``ignore_editlist="1"``: as stored)."""
    return _audio_packets


@pytest.fixture
def decoded_frames() -> Callable[[bytes], list[np.ndarray]]:
    """Every video frame of a clip's bytes as stored (no rotation), RGB."""
    return _decoded_frames
