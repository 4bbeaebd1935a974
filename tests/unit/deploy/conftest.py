"""Fixtures of the deployment tests: the tools they run, rendered compose and chart output, settings variables.

The tools (docker-compose, helm, promtool, hadolint, shellcheck) are installed by `make system-deps`
and `make install-dev` (scripts/setup.sh); a missing tool fails the test with that hint, never skips it.
Test modules use these fixtures rather than importing from here, so any pytest import mode works.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis
import yaml
from pydantic_settings import BaseSettings

from animegan.redis_server import find_redis_server
from api.config import ApiSettings
from worker.config import WorkerSettings

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "animegan"

Run = Callable[..., subprocess.CompletedProcess[str]]
RenderCompose = Callable[[Mapping[str, str]], dict[str, Any]]
HelmTemplate = Callable[..., list[dict[str, Any]]]


def _tool(name: str) -> str:
    """Path of a command-line tool: on PATH, or beside this interpreter (the project's venv)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"`{name}` is missing: run `make system-deps install-dev` (scripts/setup.sh installs it)"
    return found


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment (none of the caller's ANIMEGAN_* variables), the venv first on PATH, plus ``extra``."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def _run(
    command: list[str], env: Mapping[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (a bare first word is looked up as a tool) in a clean environment plus ``env``."""
    program = command[0] if os.sep in command[0] else _tool(command[0])
    return subprocess.run(
        [program, *command[1:]],
        cwd=cwd,
        env=_clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def run() -> Run:
    return _run


class SettingsEnv:
    """The ANIMEGAN_* variables of the api and worker settings classes, and what a process makes of them."""

    classes: ClassVar[dict[str, type[BaseSettings]]] = {"api": ApiSettings, "worker": WorkerSettings}
    # Read by the image's entrypoint and health check; not settings fields.
    image_variables = frozenset(
        {"ANIMEGAN_HEALTHCHECK", "ANIMEGAN_HEALTHCHECK_URL", "ANIMEGAN_WORKER_NODE", "ANIMEGAN_FETCH_ON_START"}
    )

    def names(self, role: str) -> dict[str, str]:
        """Environment variable -> field name."""
        settings = self.classes[role]
        prefix = str(settings.model_config.get("env_prefix", ""))
        names = {}
        for name, field in settings.model_fields.items():
            alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
            names[(alias or f"{prefix}{name}").upper()] = name
        return names

    def fields(self) -> set[str]:
        return set(self.classes["api"].model_fields) | set(self.classes["worker"].model_fields)

    def known(self) -> set[str]:
        """Every ANIMEGAN_* variable a container may legitimately receive."""
        return set(self.names("api")) | set(self.names("worker")) | self.image_variables

    def parse(self, role: str, env: Mapping[str, str]) -> dict[str, Any]:
        """The fields a fresh ``role`` process reads from exactly ``env`` (pydantic-settings parses it)."""
        settings = self.classes[role]
        code = (
            f"import sys\nfrom {settings.__module__} import {settings.__name__} as S\n"
            "sys.stdout.write(S().model_dump_json())"
        )
        done = _run([sys.executable, "-c", code], env=env)
        assert done.returncode == 0, f"{role} settings reject this environment:\n{done.stderr[-2000:]}"
        parsed: dict[str, Any] = json.loads(done.stdout)
        return parsed

    @functools.cache  # noqa: B019 - one instance per session
    def defaults(self, role: str) -> dict[str, Any]:
        return self.parse(role, {})

    def overridden(self, role: str, env: Mapping[str, str]) -> dict[str, Any]:
        """Fields whose value under ``env`` differs from the code default, keyed by variable name."""
        defaults = self.defaults(role)
        variable = {field: name for name, field in self.names(role).items()}
        return {variable[field]: value for field, value in self.parse(role, env).items() if value != defaults[field]}


@pytest.fixture(scope="session")
def settings_env() -> SettingsEnv:
    return SettingsEnv()


@pytest.fixture(scope="session")
def render_compose(tmp_path_factory: pytest.TempPathFactory) -> RenderCompose:
    """Render docker-compose.yml with the given variables as the only environment (no .env is read)."""
    empty_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    empty_env_file.write_text("")

    def render(variables: Mapping[str, str]) -> dict[str, Any]:
        done = _run(["docker-compose", "--env-file", str(empty_env_file), "config"], env=variables)
        assert done.returncode == 0, done.stderr
        config: dict[str, Any] = yaml.safe_load(done.stdout)
        return config

    return render


@pytest.fixture(scope="session")
def compose_config(render_compose: RenderCompose) -> dict[str, Any]:
    """docker-compose.yml as `docker-compose config` renders it with no variable set."""
    return render_compose({})


@pytest.fixture(scope="session")
def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


@pytest.fixture
def redis_config(tmp_path: Path) -> Callable[[list[str]], dict[str, str]]:
    """Start the project's redis-server with a deployment's arguments; the resulting CONFIG values.

    The data directory is redirected to a scratch folder and TCP is off (a unix socket instead),
    so a misspelt option or value fails here as it would in the container.
    """

    def start(args: list[str]) -> dict[str, str]:
        args = [str(tmp_path) if previous == "--dir" else arg for previous, arg in zip(["", *args], args, strict=False)]
        socket_path = tmp_path / "redis.sock"
        server = subprocess.Popen(
            [find_redis_server(), *args, "--dir", str(tmp_path), "--port", "0", "--unixsocket", str(socket_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(unix_socket_path=str(socket_path), decode_responses=True)
        try:
            for _ in range(100):
                if server.poll() is not None:
                    break
                try:
                    config: dict[str, str] = client.config_get("*")
                    return config
                except redis.ConnectionError:
                    time.sleep(0.05)
            output = server.stdout.read().decode() if server.poll() is not None and server.stdout else ""
            raise AssertionError(f"redis-server did not start with {args}:\n{output}")
        finally:
            client.close()
            server.terminate()
            server.wait(10)
            if server.stdout:
                server.stdout.close()

    return start


@pytest.fixture(scope="session")
def helm_template() -> HelmTemplate:
    """`helm template rel CHART --namespace animegan ARGS...` as a list of objects."""

    def render(*args: str, chart: Path = CHART) -> list[dict[str, Any]]:
        done = _run(["helm", "template", "rel", str(chart), "--namespace", "animegan", *args])
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return render
