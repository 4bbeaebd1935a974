"""The container image's files: Dockerfile, .dockerignore, entrypoint and health check.

Without an engine: hadolint (with its embedded ShellCheck) checks the Dockerfile, and the two shell
scripts the image runs are executed for real, outside a container, against a local HTTP server and
a scratch directory. tests/image/ builds the image on a real Docker engine and runs the stack.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from inference.weights import DEFAULT_STYLE

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    start = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[start:]


def test_hadolint_passes(run: Any) -> None:
    done = run(["hadolint", "--failure-threshold", "info", str(DOCKERFILE)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_is_multi_stage_on_python_3_11_slim() -> None:
    steps = instructions()
    args = dict(rest.split("=", 1) for keyword, rest in steps if keyword == "ARG" and "=" in rest)
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert len(froms) >= 2
    assert all(rest.startswith("${PYTHON_IMAGE}") for rest in froms)
    # The final stage takes only the wheel from the build stage (a bind mount: no layer holds the file).
    assert any(keyword == "RUN" and rest.startswith("--mount=type=bind,from=build,") for keyword, rest in final_stage())


def test_image_installs_no_torch() -> None:
    """torch is an optional extra (reference model, eager benchmark, tests); the image serves without it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert not [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("torch")]
    assert pyproject["project"]["optional-dependencies"]["torch"] == ["torch==2.13.0"]
    assert not [rest for keyword, rest in instructions() if "torch" in rest.lower()]
    # Only the service's lock is installed (hashes required), then the project's wheel without resolving again.
    deps = next(rest for keyword, rest in final_stage() if keyword == "RUN" and "requirements/service.txt" in rest)
    assert "--require-hashes" in deps
    assert "torch" not in (ROOT / "requirements" / "service.txt").read_text().lower()
    assert any(
        keyword == "RUN" and "pip install --no-compile --no-deps /dist/animegan-*.whl" in rest
        for keyword, rest in final_stage()
    )


def test_image_installs_no_inference_runtime_nor_onednn_package() -> None:
    """The kernels serve every precision from the wheel, which carries oneDNN: no peer, no libdnnl in the image."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    peers = {"onnxruntime", "openvino", "onnx"}

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0] for requirement in requirements}

    assert not names(pyproject["project"]["dependencies"]) & peers
    assert names(pyproject["project"]["optional-dependencies"]["peers"]) == peers
    service = (ROOT / "requirements" / "service.txt").read_text()
    assert not [name for name in peers if re.search(rf"^{name}==", service, re.M)]
    assert not [rest for keyword, rest in final_stage() if keyword == "RUN" and "apt-get" in rest]
    assert [rest for keyword, rest in build_stage() if keyword == "RUN" and rest.startswith("scripts/wheel.sh ")]


def test_final_stage_runs_as_a_non_root_user_with_a_healthcheck(healthcheck: Callable[..., int]) -> None:
    stage = final_stage()
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert [rest for keyword, rest in stage if keyword == "HEALTHCHECK"] == [
        '--interval=30s --timeout=15s --start-period=60s --retries=3 CMD ["animegan-healthcheck"]'
    ]
    assert ("ENTRYPOINT", '["animegan-entrypoint"]') in stage
    assert ("CMD", '["animegan", "api"]') in stage


def test_no_syntax_directive_so_an_offline_buildkit_build_needs_no_frontend_image() -> None:
    """A `# syntax=` parser directive makes BuildKit pull that frontend from a registry first."""
    directives = [line for line in DOCKERFILE.read_text().splitlines() if re.match(r"#\s*syntax\s*=", line, re.I)]
    assert not directives


def build_stage() -> list[tuple[str, str]]:
    steps = instructions()
    start = next(i for i, (keyword, rest) in enumerate(steps) if keyword == "FROM" and rest.endswith(" AS build"))
    end = next(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM" and i > start)
    return steps[start:end]


def test_build_takes_a_package_index_and_a_ca_bundle_secret() -> None:
    """Builds behind a company proxy: pip's index variables as build arguments, the CA bundle as a secret."""
    # Both stages install from an index: the build tools (build stage), the dependencies (final stage).
    for stage, lock in ((build_stage(), "requirements/build.txt"), (final_stage(), "requirements/service.txt")):
        assert {("ARG", "PIP_INDEX_URL"), ("ARG", "PIP_EXTRA_INDEX_URL"), ("ARG", "PIP_TRUSTED_HOST")} <= set(stage)
        install = next(rest for keyword, rest in stage if keyword == "RUN" and lock in rest)
        assert install.startswith("--mount=type=secret,id=ca-bundle ")
        assert "PIP_CERT=/run/secrets/ca-bundle" in install
        assert "--require-hashes" in install
    fetch = next(rest for keyword, rest in final_stage() if keyword == "RUN" and "weights fetch" in rest)
    assert fetch.startswith("--mount=type=secret,id=ca-bundle,uid=10001 ")
    assert "SSL_CERT_FILE=/run/secrets/ca-bundle" in fetch


def test_image_user_is_a_regular_account_with_fixed_ids() -> None:
    """uid 10001 is above the system range: `useradd --system` warns about it (tests/image runs the line)."""
    create = next(rest for keyword, rest in final_stage() if keyword == "RUN" and "useradd" in rest)
    assert "--system" not in create
    assert "groupadd --gid 10001 animegan" in create
    assert "useradd --uid 10001 --gid animegan" in create


def test_weights_are_prefetched_at_build_for_the_default_style() -> None:
    stage = final_stage()
    assert ("ARG", f"ANIMEGAN_PREFETCH_STYLES={DEFAULT_STYLE}") in stage
    fetch = next(rest for keyword, rest in stage if keyword == "RUN" and "ANIMEGAN_PREFETCH_STYLES" in rest)
    assert "animegan weights fetch" in fetch
    env = " ".join(rest for keyword, rest in stage if keyword == "ENV")
    assert "ANIMEGAN_CACHE_DIR=/var/cache/animegan" in env
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/" in env


def test_dockerignore_lets_through_what_the_build_copies_and_installs() -> None:
    allowed = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= allowed
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= allowed
    copied = {rest.split()[0] for keyword, rest in instructions() if keyword == "COPY" and not rest.startswith("--")}
    # Files bind-mounted from the context for one RUN, and the script that builds the wheel.
    copied |= set(re.findall(r"--mount=type=bind,source=([^,\s]+)", DOCKERFILE.read_text()))
    copied |= {rest.split()[0] for keyword, rest in build_stage() if keyword == "RUN" and rest.startswith("scripts/")}
    assert {"requirements/service.txt", "scripts/wheel.sh"} <= copied
    assert copied - {"."} <= allowed
    for path in copied - {"."}:
        assert (ROOT / path).exists(), path


def test_shell_scripts_pass_shellcheck(run: Any) -> None:
    done = run(["shellcheck", str(ENTRYPOINT), str(HEALTHCHECK), *map(str, sorted((ROOT / "scripts").glob("*.sh")))])
    assert done.returncode == 0, done.stdout


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def healthcheck(run: Any) -> Callable[..., int]:
    """Run the image's health check in ``mode``; its exit status."""

    def check(mode: str, **env: str) -> int:
        done: subprocess.CompletedProcess[str] = run([str(HEALTHCHECK)], env={"ANIMEGAN_HEALTHCHECK": mode, **env})
        return done.returncode

    return check


def test_api_healthcheck_passes_when_healthz_answers_200(
    health_server: http.server.HTTPServer, healthcheck: Callable[..., int]
) -> None:
    _Health.status = 200
    assert healthcheck("api", ANIMEGAN_HEALTHCHECK_URL=f"http://127.0.0.1:{health_server.server_port}/healthz") == 0


def test_api_healthcheck_fails_when_healthz_fails(
    health_server: http.server.HTTPServer, healthcheck: Callable[..., int]
) -> None:
    _Health.status = 503
    assert healthcheck("api", ANIMEGAN_HEALTHCHECK_URL=f"http://127.0.0.1:{health_server.server_port}/healthz") != 0


def test_metrics_healthcheck_fails_when_nothing_listens(
    health_server: http.server.HTTPServer, healthcheck: Callable[..., int]
) -> None:
    port = health_server.server_port
    health_server.server_close()
    assert healthcheck("metrics", ANIMEGAN_METRICS_PORT=str(port)) != 0


def test_healthcheck_modes_none_and_unknown(healthcheck: Callable[..., int]) -> None:
    assert healthcheck("none") == 0
    assert healthcheck("bogus") == 2


def test_entrypoint_empties_the_metrics_directory_then_runs_the_command(tmp_path: Path, run: Any) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_123.db").write_bytes(b"stale")
    (metrics / "sub").mkdir()
    done = run(
        [str(ENTRYPOINT), "sh", "-c", 'ls -A "$PROMETHEUS_MULTIPROC_DIR"; echo ran'],
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran\n"


def test_entrypoint_creates_a_missing_metrics_directory(tmp_path: Path, run: Any) -> None:
    metrics = tmp_path / "not" / "yet"
    done = run([str(ENTRYPOINT), "true"], env={"PROMETHEUS_MULTIPROC_DIR": str(metrics)})
    assert done.returncode == 0, done.stderr
    assert metrics.is_dir()


def test_entrypoint_stops_before_the_command_when_a_weights_fetch_fails(tmp_path: Path, run: Any) -> None:
    marker = tmp_path / "ran"
    env = {"ANIMEGAN_FETCH_ON_START": "no_such_style", "ANIMEGAN_CACHE_DIR": str(tmp_path)}
    done = run([str(ENTRYPOINT), "touch", str(marker)], env=env)
    assert done.returncode != 0
    assert "no_such_style" in done.stderr
    assert not marker.exists()
