"""Per-process worker runtime: the loaded Stylizers, the Redis client, CPU pinning, heartbeats, and
the main process's sweeper (built here, run from Celery's timer by ``SweeperStep``).

Prefork children load every configured style once, in ``worker_process_init``; the parent never
does (a fork after the runtime's thread pools exist can hang the children). Threaded and solo
pools have no per-child hook, so ``stylizer()`` also loads on first use. The inference package is
imported inside the loading functions only, so the parent process stays free of it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import redis
from celery import bootsteps, current_app
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from jobstore.blobs import JobBlobs, ObjectBlobs, RedisBlobs, in_object_store
from jobstore.heartbeats import Heartbeat, live_heartbeats
from jobstore.keys import QUEUE_NAME, TASK_NAME, WORKERS_KEY
from jobstore.objectstore import ObjectStore
from jobstore.queue import QueueScripts
from jobstore.records import JobRecord, as_text, now
from jobstore.video_blobs import ObjectVideoBlobs, RedisVideoBlobs, VideoBlobs
from jobstore.videos import VideoScripts
from telemetry.families import observe_store
from worker import metrics
from worker.config import WorkerSettings, available_cores
from worker.sweeper import Sweeper

if TYPE_CHECKING:
    from inference.pipeline import Stylizer

logger = logging.getLogger(__name__)

# How long past its expiry a dead worker's heartbeat stays before any worker removes it.
_STALE_HEARTBEAT_S = 60.0


class Runtime:
    """Everything one worker process holds for the life of the process."""

    def __init__(self, settings: WorkerSettings, *, concurrency: int | None = None) -> None:
        self.settings = settings
        self.concurrency = concurrency or settings.concurrency
        self.threads = settings.threads or max(1, available_cores() // self.concurrency)
        self.worker_id = holder_of(os.getpid())
        self._stylizers: dict[str, Stylizer] = {}
        self._load_lock = threading.Lock()
        self._redis: redis.Redis | None = None
        self._scripts: QueueScripts | None = None
        self._video_scripts: tuple[redis.Redis, VideoScripts] | None = None
        self._objects: ObjectStore | None = None
        self._sweeper: Sweeper | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            # A command that meets a Redis restart is retried on a fresh connection for about ten seconds
            # (backoff 0.2 s doubling to 2 s, 8 tries): a running job rides out a brief restart.
            self._redis = redis.Redis.from_url(
                self.settings.redis_url,
                socket_connect_timeout=5,
                socket_timeout=30,
                health_check_interval=30,
                retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 8),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            )
        return self._redis

    @property
    def scripts(self) -> QueueScripts:
        """The job store's scripts on this process's client (registered again if the client changed)."""
        if self._scripts is None or self._scripts.client is not self.redis:
            self._scripts = QueueScripts(self.redis)
        return self._scripts

    @property
    def video_scripts(self) -> VideoScripts:
        """The video scripts on this process's client (registered again if the client changed)."""
        if self._video_scripts is None or self._video_scripts[0] is not self.redis:
            self._video_scripts = (self.redis, VideoScripts(self.redis))
        return self._video_scripts[1]

    def blobs_for(self, record: JobRecord) -> JobBlobs:
        """Where this job's bytes are: the object store or Redis (``jobstore.blobs``), as its record says."""
        if not in_object_store(record):
            return RedisBlobs(self.redis)
        return ObjectBlobs(self.redis, self._object_store())

    def video_blobs_for(self, video: JobRecord) -> VideoBlobs:
        """Where a video's clip, pieces and result are (``jobstore.video_blobs``), as its record says."""
        if not in_object_store(video):
            return RedisVideoBlobs(self.redis)
        return ObjectVideoBlobs(self.redis, self._object_store())

    def _object_store(self) -> ObjectStore:
        if self._objects is None:
            if not self.settings.object_store_enabled:
                raise RuntimeError("the job's bytes are in the object store, but ANIMEGAN_S3_BUCKET is unset here")
            # Opened in the process that uses it: obstore is not fork-safe (jobstore.objectstore).
            self._objects = ObjectStore(self.settings, observe=observe_store)
        return self._objects

    def sweeper_for_main(self) -> Sweeper:
        """This process's sweeper (the main worker process runs it from Celery's timer: ``SweeperStep``)."""
        if self._sweeper is None:
            # Its own client, quick to give up: the sweep runs on the main process's event loop.
            client = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
            broker = (
                client
                if self.settings.broker == self.settings.redis_url
                else redis.Redis.from_url(self.settings.broker, socket_connect_timeout=2, socket_timeout=5)
            )
            self._sweeper = Sweeper(
                client,
                self.send_token,
                holder=self.worker_id,
                interval_s=self.settings.sweep_interval_s,
                max_attempts=self.settings.max_attempts,
                broker=broker,
            )
        return self._sweeper

    def send_token(self, job_id: str) -> None:
        """Send one message for a waiting job (``job_id`` only names it in the log)."""
        current_app.send_task(TASK_NAME, args=[job_id], queue=QUEUE_NAME)

    def pin_cpu(self, index: int) -> None:
        """Give pool child ``index`` a core of its own when there is one child per core."""
        cpus = sorted(os.sched_getaffinity(0))
        if not self.settings.pin_cpus or len(cpus) < 2 or self.concurrency != len(cpus):
            return
        core = cpus[index % len(cpus)]
        os.sched_setaffinity(0, {core})
        logger.info("pinned worker process", extra={"core": core, "child_index": index})

    def load_models(self) -> None:
        for style in self.settings.styles:
            self.stylizer(style)

    def stylizer(self, style: str) -> Stylizer:
        """The Stylizer for ``style``, loaded on first use (raises inference.errors.WeightsError)."""
        with self._load_lock:
            found = self._stylizers.get(style)
            if found is None:
                found = self._stylizers[style] = self._load(style)
            return found

    def _load(self, style: str) -> Stylizer:
        from inference.pipeline import Stylizer

        start = time.perf_counter()
        stylizer = Stylizer.load(
            style,
            weights_dir=self.settings.weights_dir,
            cache_dir=self.settings.cache_dir,
            threads=self.threads,
            precision=self.settings.precision,
        )
        seconds = time.perf_counter() - start
        metrics.observe_model_load(seconds)
        metrics.set_engine(str(stylizer.precision), stylizer.engine.runtime_name)
        logger.info(
            "model loaded",
            extra={
                "style": style,
                "threads": self.threads,
                "precision": str(stylizer.precision),
                "runtime": stylizer.engine.runtime_name,
                "load_s": round(seconds, 3),
            },
        )
        return stylizer

    def start_heartbeat(self) -> None:
        """Announce this process to the gateway's /readyz every few seconds, from a daemon thread.

        The thread also makes the first beat: a beat made here would raise while Redis is away,
        and Celery's signal dispatch swallows that, leaving a process that runs jobs but is never
        announced. The thread keeps trying instead, so the process turns ready once Redis is back.
        """
        if self._heartbeat is not None:
            return
        self._heartbeat = threading.Thread(target=self._beat_forever, name="animegan-heartbeat", daemon=True)
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        try:
            self.redis.hdel(WORKERS_KEY, self.worker_id)
        except redis.RedisError:
            logger.warning("could not remove heartbeat", exc_info=True)

    def beat(self) -> None:
        interval = self.settings.heartbeat_interval_s
        beat = Heartbeat(
            worker_id=self.worker_id,
            pid=os.getpid(),
            styles=sorted(self._stylizers),
            threads=self.threads,
            expires_at=now() + 3 * interval,
        )
        self.redis.hset(WORKERS_KEY, self.worker_id, beat.model_dump_json())

    def _beat_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
                self._forget_dead_workers()
            except redis.RedisError:
                logger.warning("heartbeat failed; retrying", exc_info=True)
            if self._stop.wait(self.settings.heartbeat_interval_s):
                return

    def _forget_dead_workers(self) -> None:
        raw = self.redis.hgetall(WORKERS_KEY)
        alive = {b.worker_id for b in live_heartbeats(raw, at=now() - _STALE_HEARTBEAT_S)}
        stale = [k for k in raw if as_text(k) not in alive]
        if stale:
            self.redis.hdel(WORKERS_KEY, *stale)


def holder_of(pid: int) -> str:
    """The lease holder name of process ``pid`` on this host (what its Runtime.worker_id is)."""
    return f"{socket.gethostname()}:{pid}"


_runtime: Runtime | None = None


def init_runtime(settings: WorkerSettings, *, concurrency: int | None = None) -> Runtime:
    global _runtime
    _runtime = Runtime(settings, concurrency=concurrency)
    return _runtime


def get_runtime() -> Runtime:
    """This process's runtime; threaded/solo pools and tests get one built from the environment."""
    global _runtime
    if _runtime is None or _runtime.worker_id != holder_of(os.getpid()):
        from worker.config import load_worker_settings

        settings = _runtime.settings if _runtime is not None else load_worker_settings()
        concurrency = _runtime.concurrency if _runtime is not None else None
        _runtime = Runtime(settings, concurrency=concurrency)
    return _runtime


class SweeperStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs this worker's sweeper from Celery's timer, in the main process."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._timer_entry: Any = None

    def start(self, worker: Any) -> None:
        sweeper = get_runtime().sweeper_for_main()
        self._timer_entry = worker.timer.call_repeatedly(sweeper.interval_s, sweeper.tick)

    def stop(self, worker: Any) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
