"""The compose stack on a real Docker engine, its api and worker locked down as the Helm chart runs them.

docker-compose.yml brings up redis, api, worker and prometheus from the image built here and the
base images (the registry's, or stand-ins); Grafana is not started (no Debian package, no registry).
The api and worker containers run with the chart's security settings (values.yaml
``podSecurityContext`` and ``securityContext`` in compose terms: uid/gid 10001, read-only root file
system, every capability dropped, no privilege escalation), the worker with one CPU of quota
(ANIMEGAN_WORKER_CPUS=1) and the weights of ../shared/weights mounted at /weights.

The tests share one stack and run in file order; each leaves it serving. Every container's log
is written to test-artifacts/image/stack.log at the end.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image

from animegan.redis_server import free_port
from inference.precision import resolve_precision

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
ARTIFACTS = ROOT / "test-artifacts" / "image"
PROJECT = "animegan-image-test"
# What the engine computes in on this CPU: auto on the native oneDNN kernels the image's wheel carries
# (bf16 where the CPU has bf16 instructions, else int8 where it has int8 units, else fp32); the image
# has no graph fallback.
EXPECTED_ENGINE = (str(resolve_precision("auto", native=True, fallbacks=frozenset())), "onednn")
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]
_variants = itertools.count(1)


def photo(width: int, height: int) -> bytes:
    """A real photo at that size, different bytes and pixels on every call (no two jobs deduplicated)."""
    n = next(_variants)
    with Image.open(SHARED / "samples" / "railway_crossing.jpg") as img:
        image = img.convert("RGB").resize((width, height))
    image.paste((n * 53 % 256, n * 97 % 256, n * 29 % 256), (0, 0, 16, 16))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def locked_down() -> dict[str, Any]:
    """The chart's pod and container security settings as compose service keys."""
    values = yaml.safe_load((ROOT / "charts" / "animegan" / "values.yaml").read_text())
    pod, container = values["podSecurityContext"], values["securityContext"]
    settings = {
        "user": f"{pod['runAsUser']}:{pod['runAsGroup']}",
        "read_only": container["readOnlyRootFilesystem"],
        "cap_drop": container["capabilities"]["drop"],
        "security_opt": [] if container["allowPrivilegeEscalation"] else ["no-new-privileges:true"],
    }
    return {"services": {"api": settings, "worker": settings}}


class Stack:
    """The compose project, its containers, and the service's HTTP API on a loopback port."""

    def __init__(self, engine: Any, image: str, bases: dict[str, str], workdir: Path) -> None:
        self.engine = engine
        api_port, prometheus_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{api_port}"
        self.prometheus = f"http://127.0.0.1:{prometheus_port}"
        (workdir / "locked-down.json").write_text(json.dumps(locked_down()))
        (workdir / "empty.env").write_text("")  # no .env of the checkout is read
        compose = shutil.which("docker-compose")
        assert compose, "no docker-compose: run `make image-deps` (scripts/setup.sh image)"
        self.command = [
            compose, "--project-name", PROJECT, "--project-directory", str(ROOT),
            "--file", str(ROOT / "docker-compose.yml"), "--file", str(workdir / "locked-down.json"),
            "--env-file", str(workdir / "empty.env"),
        ]  # fmt: skip
        self.env = {key: os.environ[key] for key in ("PATH", "HOME", "DOCKER_HOST") if key in os.environ}
        self.env.update(
            ANIMEGAN_IMAGE=image,
            REDIS_IMAGE=bases["redis"],
            PROMETHEUS_IMAGE=bases["prometheus"],
            ANIMEGAN_WEIGHTS_HOST_DIR=str(SHARED / "weights"),
            ANIMEGAN_STYLES="hayao",
            ANIMEGAN_DEFAULT_STYLE="hayao",
            ANIMEGAN_WORKER_CPUS="1",
            ANIMEGAN_API_BIND="127.0.0.1",
            ANIMEGAN_API_PORT=str(api_port),
            MONITORING_BIND="127.0.0.1",
            PROMETHEUS_PORT=str(prometheus_port),
        )

    def compose(self, *args: str, timeout: float = 420) -> str:
        done = subprocess.run(
            [*self.command, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"docker-compose {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
        return done.stdout

    def container(self, service: str) -> str:
        found = self.compose("ps", "--quiet", service).split()
        assert len(found) == 1, f"{service}: {found}"
        return found[0]

    def inspect(self, service: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.engine.run("inspect", self.container(service)).stdout)[0]
        return found

    def logs(self, service: str, since: str | None = None) -> str:
        done = self.engine.run("logs", *(["--since", since] if since else []), self.container(service))
        return done.stdout + done.stderr

    def log_records(self, service: str, message: str, since: str | None = None) -> list[dict[str, Any]]:
        """The service's JSON log records with this message."""
        lines = (line for line in self.logs(service, since).splitlines() if line.startswith("{"))
        return [record for record in map(json.loads, lines) if record.get("msg") == message]

    def execute(self, service: str, *command: str) -> str:
        return str(self.engine.run("exec", self.container(service), *command).stdout)

    def wait_ready(self, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"{self.api}/readyz", timeout=5).status_code
            except httpx.TransportError as exc:
                status = repr(exc)
            if status == 200:
                return
            time.sleep(0.5)
        raise AssertionError(f"/readyz answered {status} for {timeout_s} s; see the logs in {ARTIFACTS}")

    def submit(self, image: bytes) -> str:
        response = httpx.post(f"{self.api}/stylize", files={"image": ("photo.jpg", image, "image/jpeg")}, timeout=30)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.api}/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def wait_job(self, job_id: str, states: tuple[str, ...] = ("succeeded", "failed"), timeout_s: float = 180) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in states:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} not {states} in {timeout_s} s: {job}")

    def save_logs(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([*self.command, "logs", "--no-color", "--timestamps"], env=self.env, capture_output=True)
        (ARTIFACTS / "stack.log").write_bytes(done.stdout + done.stderr)


@pytest.fixture(scope="module")
def stack(
    engine: Any, image: str, base_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = Stack(engine, image, base_images, tmp_path_factory.mktemp("stack"))
    stack.compose("down", "--volumes", "--remove-orphans")  # what an interrupted run left
    try:
        stack.compose("up", "--detach", "--no-build", "redis", "api", "worker", "prometheus")
        stack.wait_ready()
        yield stack
    finally:
        stack.save_logs()
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "60")


def test_a_job_runs_end_to_end_on_the_native_kernels(stack: Stack) -> None:
    job = stack.wait_job(stack.submit(photo(1280, 853)))
    assert job["status"] == "succeeded", job
    assert job["output"]["precision"] == EXPECTED_ENGINE[0]
    result = httpx.get(f"{stack.api}{job['links']['result']}", timeout=30)
    assert result.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(result.content)) as image:
        assert image.size == (job["input"]["width"], job["input"]["height"]) == (1024, 682)
    loaded = stack.log_records("worker", "model loaded")
    assert loaded
    assert {record["runtime"] for record in loaded} == {EXPECTED_ENGINE[1]}


def test_the_worker_takes_its_threads_from_the_containers_cpu_quota(stack: Stack) -> None:
    """One CPU of quota on a host of more: one thread, read from cgroup v1 (this host) or v2."""
    assert len(os.sched_getaffinity(0)) >= 2, "needs 2 cores to tell the quota from the host's core count"
    version = stack.engine.run("info", "--format", "{{.CgroupVersion}}").stdout.strip()
    if version == "1":
        assert stack.execute("worker", "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us").split() == ["100000"]
    else:
        assert stack.execute("worker", "cat", "/sys/fs/cgroup/cpu.max").split() == ["100000", "100000"]
    loaded = stack.log_records("worker", "model loaded")
    assert loaded
    assert {record["threads"] for record in loaded} == {1}


def query(stack: Stack, promql: str) -> float | None:
    response = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    assert response.status_code == 200, response.text
    result = response.json()["data"]["result"]
    return sum(float(series["value"][1]) for series in result) if result else None


def test_prometheus_scrapes_the_api_and_the_workers(stack: Stack) -> None:
    assert stack.wait_job(stack.submit(photo(320, 240)))["status"] == "succeeded"
    wanted = [
        'up{job="animegan-api"}',
        'up{job="animegan-worker"}',
        f'animegan_worker_engine_info{{job="animegan-worker",runtime="{EXPECTED_ENGINE[1]}"}}',
        'animegan_jobs_total{job="animegan-worker",outcome="succeeded"}',
        'animegan_http_requests_total{job="animegan-api",route="/stylize"}',
        'animegan_process_resident_memory_bytes{job="animegan-worker",component="worker"}',
    ]
    deadline = time.monotonic() + 120
    values: dict[str, float | None] = {}
    while time.monotonic() < deadline:
        values = {promql: query(stack, promql) for promql in wanted}
        if all(value is not None and value >= 1 for value in values.values()):
            break
        time.sleep(2)
    assert all(value is not None and value >= 1 for value in values.values()), values
    groups = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules, "the alert rules of charts/animegan/alerts were not loaded"
    assert not [rule["name"] for rule in rules if rule["health"] == "err"]


PROBE = """
import errno, os
status = dict(line.split(":", 1) for line in open("/proc/1/status"))
try:
    open("/opt/venv/probe", "w")
    root = "writable"
except OSError as exc:
    root = "read-only" if exc.errno == errno.EROFS else str(exc)
with open("/tmp/probe", "w") as probe:
    probe.write("tmp is writable")
print(os.getuid(), os.getgid(), status["CapEff"].strip(), status["NoNewPrivs"].strip(), root)
"""


@pytest.mark.parametrize("service", ["api", "worker"])
def test_the_charts_security_settings_hold(stack: Stack, service: str) -> None:
    host = stack.inspect(service)["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert "/tmp" in host["Tmpfs"]
    # What the service's own process (PID 1: the entrypoint execs it) holds.
    assert stack.execute(service, "python", "-c", PROBE).split() == ["10001", "10001", "0" * 16, "1", "read-only"]


def test_a_worker_stopped_mid_job_finishes_it(stack: Stack) -> None:
    worker = stack.container("worker")
    grace = stack.compose("config")  # what `docker compose stop` would wait: the stop_grace_period
    grace_s = yaml.safe_load(grace)["services"]["worker"]["stop_grace_period"].removesuffix("s")
    job_id = stack.submit(photo(1024, 1024))  # about 4 s on one CPU of the test machine
    stack.wait_job(job_id, states=("running", "succeeded", "failed"))
    stopped_at = time.time()
    # SIGTERM at once (docker's own client answers in milliseconds, docker-compose 1.x's in about a second)
    stack.engine.run("stop", "--time", grace_s, worker, timeout=float(grace_s) + 60)
    job = stack.job(job_id)
    assert job["status"] == "succeeded", job
    finished_at = datetime.fromisoformat(job["finished_at"]).timestamp()
    assert finished_at > stopped_at, "the job had ended before the worker was told to stop: no proof"
    assert stack.inspect("worker")["State"]["ExitCode"] == 0  # a warm shutdown, not a kill
    stack.compose("start", "worker")
    stack.wait_ready()


def test_a_redis_restart_keeps_jobs(stack: Stack) -> None:
    done_id = stack.submit(photo(320, 240))
    assert stack.wait_job(done_id)["status"] == "succeeded"
    result = httpx.get(f"{stack.api}/jobs/{done_id}/result", timeout=30).content
    stack.compose("stop", "worker")
    waiting_id = stack.submit(photo(320, 240))
    assert stack.job(waiting_id)["status"] == "queued"

    stack.compose("restart", "redis")
    deadline = time.monotonic() + 60
    while httpx.get(f"{stack.api}/jobs/{waiting_id}", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the gateway did not find the waiting job again after the restart"
        time.sleep(0.5)
    assert stack.job(waiting_id)["status"] == "queued"
    assert stack.job(done_id)["status"] == "succeeded"
    assert httpx.get(f"{stack.api}/jobs/{done_id}/result", timeout=30).content == result

    stack.compose("start", "worker")
    assert stack.wait_job(waiting_id)["status"] == "succeeded"
    stack.wait_ready()


def test_a_worker_started_while_redis_is_away_turns_ready_once_redis_is_back(stack: Stack) -> None:
    stack.compose("stop", "worker")
    stack.compose("stop", "redis")
    stack.engine.run("start", stack.container("worker"))
    since = stack.inspect("worker")["State"]["StartedAt"]
    deadline = time.monotonic() + 120
    # The pool child loads its model, then its first heartbeat fails: the thread's warning, or
    # Celery's report of a start hook that raised.
    while not stack.log_records("worker", "model loaded", since) or not any(
        needle in stack.logs("worker", since) for needle in ("heartbeat failed", "Signal handler")
    ):
        assert time.monotonic() < deadline, (
            f"no failed first heartbeat in the worker's log:\n{stack.logs('worker', since)}"
        )
        time.sleep(1)
    assert httpx.get(f"{stack.api}/readyz", timeout=10).status_code == 503

    stack.engine.run("start", stack.container("redis"))
    stack.wait_ready(timeout_s=90)
