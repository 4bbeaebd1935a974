"""Process launchers behind ``animegan serve``, ``animegan api`` and ``animegan worker``.

``serve`` runs everything one machine needs, each part in its own process group:

1. a private Redis (``animegan.redis_server``) unless ANIMEGAN_REDIS_URL is set;
2. the Celery worker: ``python -m celery -A worker.celery_app worker --pool prefork ...``;
3. the gateway: ``python -m uvicorn --factory api.main:create_app ...``.

Before starting anything it checks the configuration, that every style served has a weights file
and that the API's port is free (``animegan.serve_options``: ``--style``, ``--weights-dir``,
``--fetch-missing``). It prints one line when ``/readyz`` answers 200 (asked only once a worker
heartbeat is in Redis, so the gateway logs no 503 while it starts), and on Ctrl-C or SIGTERM
stops the gateway, then the worker (warm shutdown, then SIGKILL after a grace period), then
Redis. Metrics: serve creates a fresh ``PROMETHEUS_MULTIPROC_DIR`` (under /dev/shm when it
exists: memory, not disk) shared by the gateway and the worker processes, so ``GET /metrics`` on
the API port carries the workers' series too; the directory is removed on exit. When a part
dies, the reason is the last line printed.

Nothing here imports torch or the inference runtime (only the torch-free weights registry, to
check the files): the worker's children load the model.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from animegan import serve_options

if TYPE_CHECKING:
    from api.config import ApiSettings

logger = logging.getLogger("animegan.serve")

READY_TIMEOUT_S = 600.0
WORKER_GRACE_S = 30.0
OTHER_GRACE_S = 10.0

Popen = subprocess.Popen[bytes]
# api.header_limit.PROTOCOL_PATH, named here so building the command imports nothing of the gateway.
API_PROTOCOL = "api.header_limit:HeaderLimitedProtocol"


def _say(message: str) -> None:
    sys.stdout.write(f"animegan: {message}\n")
    sys.stdout.flush()


def _fail(message: str) -> None:
    """A one-line reason why a command cannot run (messages name their command already)."""
    sys.stderr.write(f"{message}\n")


def _parser(prog: str, *, workers_help: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--workers", type=int, default=None, help=workers_help)
    return parser


def _check_settings(args: argparse.Namespace) -> tuple[ApiSettings, serve_options.ServeSettings]:
    """Flags into ANIMEGAN_*, then every process's settings, the weights and the port; refuses with one line."""
    from pydantic import ValidationError

    from api.config import load_api_settings
    from jobstore.settings import describe_errors
    from worker.config import load_worker_settings

    serve_options.apply_flags(args, os.environ)
    serve_options.check_styles(os.environ)
    try:
        api_settings = load_api_settings()
        worker_settings = load_worker_settings()
        serve_settings = serve_options.ServeSettings()
    except SystemExit as exc:
        raise serve_options.ServeRefused(str(exc.code)) from None
    except ValidationError as exc:
        raise serve_options.ServeRefused(f"animegan serve: invalid configuration: {describe_errors(exc)}") from None
    serve_options.ensure_weights(
        worker_settings.styles,
        weights_dir=worker_settings.weights_dir,
        cache_dir=worker_settings.cache_dir,
        fetch=args.fetch_missing,
    )
    serve_options.check_port(args.host, args.port)
    return api_settings, serve_settings


def main_serve(argv: list[str]) -> int:
    """``animegan serve``: Redis (if needed), worker(s) and API on this machine; returns the exit code."""
    parser = _parser("animegan serve", workers_help="worker processes (default: one per core)")
    serve_options.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.workers:
        os.environ["ANIMEGAN_WORKER_CONCURRENCY"] = str(args.workers)
    try:
        checked, launcher = _check_settings(args)
    except serve_options.ServeRefused as exc:
        _fail(str(exc))
        return 2
    env = dict(os.environ)
    stop = _stop_on_signals()
    outcome = _Outcome()
    with _metrics_dir() as metrics_dir, contextlib.ExitStack() as stack:
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        redis_url = checked.redis_url
        if "redis_url" not in checked.model_fields_set:
            from animegan.redis_server import RedisServer, RedisServerError

            server = RedisServer(maxmemory=launcher.redis_maxmemory)
            try:
                server.start()
            except RedisServerError as exc:
                _fail(f"animegan serve: cannot start Redis: {exc}")
                return 1
            stack.callback(server.stop)
            env["ANIMEGAN_REDIS_URL"] = redis_url = server.url
            limit = launcher.redis_maxmemory
            bound = f"maxmemory {limit / 2**20:.0f} MiB" if limit else "no maxmemory"
            _say(f"private Redis on {server.url} (memory only, {bound})")
        children = _start_children(env, args.host, args.port, stack)
        _supervise(children, args.host, args.port, redis_url, stop, outcome)
    # After every process has stopped, so the reason is the last line on the terminal.
    if outcome.failure:
        _fail(outcome.failure)
    return outcome.code


def worker_command() -> list[str]:
    """The production worker command; concurrency and the rest come from ANIMEGAN_* settings."""
    from jobstore.keys import QUEUE_NAME

    command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "prefork"]
    return [*command, "--queues", QUEUE_NAME, "--without-gossip", "--without-mingle", "--loglevel", "INFO"]


def api_command(host: str, port: int) -> list[str]:
    """The production gateway command (one uvicorn process).

    The HTTP protocol is ``api.header_limit``'s (431 past ANIMEGAN_MAX_HEADER_BYTES). uvicorn's own
    X-Forwarded-For handling is off: the gateway believes the header only from
    ANIMEGAN_TRUSTED_PROXIES (api.tenancy.auth), and uvicorn would otherwise rewrite the peer first.
    """
    return [
        sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
        "--host", host, "--port", str(port), "--no-proxy-headers", "--http", API_PROTOCOL,
    ]  # fmt: skip


def _start_children(env: dict[str, str], host: str, port: int, stack: contextlib.ExitStack) -> dict[str, Popen]:
    children: dict[str, Popen] = {}
    commands = (("worker", worker_command(), WORKER_GRACE_S), ("api", api_command(host, port), OTHER_GRACE_S))
    for name, command, grace in commands:
        children[name] = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        # ExitStack unwinds last-in first-out: the API stops first, then the worker, then Redis.
        stack.callback(_stop_group, children[name], grace)
    return children


@dataclass
class _Outcome:
    """How the supervised run ended: the exit code, and the line to print once everything stopped."""

    code: int = 0
    failure: str | None = None


def _supervise(
    children: dict[str, Popen], host: str, port: int, redis_url: str, stop: threading.Event, outcome: _Outcome
) -> None:
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{probe_host}:{port}"
    ready_by = time.monotonic() + READY_TIMEOUT_S
    ready = False
    while not stop.wait(0.5):
        for name, child in children.items():
            if child.poll() is not None:
                outcome.code = 1
                outcome.failure = f"animegan serve: the {name} process exited with status {child.returncode}; stopped"
                if name == "api" and not ready and serve_options.port_in_use(host, port):
                    outcome.failure = serve_options.port_refusal(host, port, errno.EADDRINUSE)
                return
        if not ready and _is_ready(url, redis_url):
            ready = True
            _say(f"ready on {url}  (API docs: {url}/docs; Ctrl-C stops)")
        if not ready and time.monotonic() > ready_by:
            outcome.code = 1
            outcome.failure = f"animegan serve: not ready after {READY_TIMEOUT_S:.0f} s; stopped"
            return
    _say("stopping")


def _is_ready(url: str, redis_url: str) -> bool:
    """Ask the API's /readyz only once a worker heartbeat is in Redis: no 503 lines in its access log."""
    import redis

    from jobstore.heartbeats import live_heartbeats
    from jobstore.keys import WORKERS_KEY

    try:
        with redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2) as client:
            if not live_heartbeats(client.hgetall(WORKERS_KEY)):
                return False
    except (redis.RedisError, OSError):
        return False
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop_group(child: Popen, grace_s: float) -> None:
    """SIGTERM the child's process group, wait, then SIGKILL whatever is left of it."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(grace_s)
    # The leader may be gone while its children (pool processes) linger: kill the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(5)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


@contextlib.contextmanager
def _metrics_dir() -> Iterator[str]:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        path = shm / f"animegan-metrics-{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(mode=0o700)
    else:
        path = Path(tempfile.mkdtemp(prefix="animegan-metrics-"))
    try:
        yield str(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main_api(argv: list[str]) -> int:
    """``animegan api``: the gateway alone (production); Redis and workers run elsewhere."""
    args = _parser("animegan api", workers_help="uvicorn worker processes (default 1)").parse_args(argv)
    import uvicorn

    from api.config import load_api_settings

    try:
        load_api_settings()
    except SystemExit as exc:
        _fail(str(exc.code))
        return 2
    workers = args.workers or 1
    _prepare_metrics_dir()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _say("several API processes without PROMETHEUS_MULTIPROC_DIR: /metrics shows one process per scrape")
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        proxy_headers=False,
        http=API_PROTOCOL,  # 431 past ANIMEGAN_MAX_HEADER_BYTES
    )
    return 0


def main_worker(argv: list[str]) -> int:
    """``animegan worker``: a Celery worker (prefork, one child per core by default)."""
    parser = argparse.ArgumentParser(prog="animegan worker")
    parser.add_argument("--concurrency", type=int, default=None, help="pool processes (default: one per core)")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    if args.concurrency:
        os.environ["ANIMEGAN_WORKER_CONCURRENCY"] = str(args.concurrency)
    with _worker_metrics_dir():
        checked = _check_worker()
        if checked:
            _fail(checked)
            return 2
        from jobstore.keys import QUEUE_NAME
        from worker.celery_app import app

        command = ["worker", "--pool", args.pool, "--queues", QUEUE_NAME, "--loglevel", args.loglevel]
        command += ["--concurrency", str(app.conf.worker_concurrency), "--without-gossip", "--without-mingle"]
        try:
            app.worker_main(argv=command)
        except SystemExit as exc:
            return int(exc.code or 0) if isinstance(exc.code, int | None) else 1
        return 0


def _prepare_metrics_dir() -> None:
    """Create PROMETHEUS_MULTIPROC_DIR if needed and drop the files of processes that no longer run.

    Must run before anything imports prometheus_client (it picks multiprocess mode at import).
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        from telemetry.exposition import remove_stale_files

        remove_stale_files(path)


@contextlib.contextmanager
def _worker_metrics_dir() -> Iterator[None]:
    """Pool children report through PROMETHEUS_MULTIPROC_DIR: with the metrics port on and no
    directory given, use a private one (in memory) for the worker's life, else their series are lost."""
    from worker.config import load_worker_settings

    try:
        port = load_worker_settings().metrics_port
    except SystemExit:
        port = None  # _check_worker reports the configuration error
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") or not port:
        _prepare_metrics_dir()
        yield
        return
    with _metrics_dir() as path:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        try:
            yield
        finally:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def _check_worker() -> str | None:
    from worker.config import load_worker_settings

    try:
        settings = load_worker_settings()
        from worker.celery_app import check_weights

        check_weights(settings)
    except SystemExit as exc:
        return str(exc.code)
    return None


if __name__ == "__main__":
    commands = {"serve": main_serve, "api": main_api, "worker": main_worker}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python -m animegan.serve {{{','.join(commands)}}} [options]")
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
