"""docker-compose.yml and .env.example: the stack renders, passes every setting, and says what it defaults to.

`docker-compose config` (Debian's docker-compose) validates the file against the Compose schema and
interpolates the variables; no Docker engine is needed, and none runs here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# Settings the containers deliberately set to something other than the code default.
CONTAINER_OVERRIDES = {
    "api": {"ANIMEGAN_LOG_FORMAT": "json"},
    "worker": {
        "ANIMEGAN_LOG_FORMAT": "json",
        "ANIMEGAN_WEIGHTS_DIR": "/weights",
        "ANIMEGAN_CACHE_DIR": "/var/cache/animegan",
        "ANIMEGAN_WORKER_CONCURRENCY": 1,
        "ANIMEGAN_METRICS_PORT": 9100,
    },
}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source of a rendered service (docker-compose 1.x renders `source:target:mode`)."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found[target] = source
    return found


def set_variables(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as the container gets it (null entries are not passed)."""
    return {key: str(value) for key, value in service["environment"].items() if value is not None}


def test_compose_file_validates_with_docker_compose_config(run: Any) -> None:
    done = run(["docker-compose", "--file", str(COMPOSE_FILE), "config", "--quiet"])
    assert done.returncode == 0, done.stderr


def test_stack_has_the_five_services_and_seaweedfs_in_the_s3_profile(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert set(services) == {"redis", "api", "worker", "prometheus", "grafana", "seaweedfs"}
    assert services["seaweedfs"]["profiles"] == ["s3"]
    assert all("profiles" not in services[name] for name in ("redis", "api", "worker", "prometheus", "grafana"))


def test_the_s3_profile_runs_seaweedfs_as_the_tests_do(compose_config: dict[str, Any]) -> None:
    seaweedfs = compose_config["services"]["seaweedfs"]
    command = seaweedfs["command"]
    assert command[0] == "mini"
    # No usage report leaves the machine, no bucket appears by accident, the bucket exists at start.
    assert {"-master.telemetry=false", "-s3.autoCreateBucket=false", "-bucket=animegan"} <= set(command)
    assert set(seaweedfs["environment"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert "/data" in mounts(seaweedfs)
    for role in ("api", "worker"):
        passed = compose_config["services"][role]["environment"]
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "ANIMEGAN_S3_BUCKET"} <= set(passed)


@pytest.mark.parametrize("role", ["api", "worker"])
def test_every_settings_field_is_named_in_the_service_environment(
    compose_config: dict[str, Any], settings_env: Any, role: str
) -> None:
    environment = compose_config["services"][role]["environment"]
    missing = sorted(set(settings_env.names(role)) - set(environment))
    assert not missing, f"docker-compose.yml does not pass {missing} to {role}"


@pytest.mark.parametrize("role", ["api", "worker"])
def test_service_environment_names_only_real_settings(
    compose_config: dict[str, Any], settings_env: Any, role: str
) -> None:
    known = settings_env.known()
    passed = {name for name in compose_config["services"][role]["environment"] if name.startswith("ANIMEGAN_")}
    assert passed <= known, f"unknown ANIMEGAN_ variables (typo or removed setting?): {sorted(passed - known)}"


@pytest.mark.parametrize("role", ["api", "worker"])
def test_compose_defaults_parse_and_match_the_code_defaults(
    compose_config: dict[str, Any], settings_env: Any, role: str
) -> None:
    environment = set_variables(compose_config["services"][role])
    assert settings_env.overridden(role, environment) == CONTAINER_OVERRIDES[role]


def test_env_example_documents_every_variable_with_its_default(
    compose_config: dict[str, Any], settings_env: Any
) -> None:
    text = (ROOT / ".env.example").read_text()
    documented = dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE))
    compose_text = "\n".join(
        line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    defaults = dict(re.findall(r"\$\{([A-Z][A-Z0-9_]*):?-([^}]*)\}", compose_text))
    variables = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    passed_through = {k for k, v in compose_config["services"]["worker"]["environment"].items() if v is None}
    settings = set(settings_env.names("api")) | set(settings_env.names("worker"))
    assert not (variables | passed_through | settings) - set(documented), "undocumented in .env.example"
    wrong = {name: (documented[name], value) for name, value in defaults.items() if documented[name] != value}
    assert not wrong, f".env.example shows another default than docker-compose.yml: {wrong}"


def test_an_empty_prefetch_list_builds_without_weights(compose_config: dict[str, Any], render_compose: Any) -> None:
    """Unset: the default style is baked in; set but empty: none (an offline build), as .env.example says."""
    assert compose_config["services"]["worker"]["build"]["args"]["ANIMEGAN_PREFETCH_STYLES"] == "face_paint_512_v2"
    for name in ("api", "worker"):
        args = render_compose({"ANIMEGAN_PREFETCH_STYLES": ""})["services"][name]["build"]["args"]
        assert args["ANIMEGAN_PREFETCH_STYLES"] == ""


def test_package_index_build_arguments_reach_the_build(render_compose: Any) -> None:
    index = "https://pypi.internal.example/simple"
    args = render_compose({"PIP_INDEX_URL": index, "PIP_TRUSTED_HOST": "pypi.internal.example"})["services"]["worker"]
    assert args["build"]["args"]["PIP_INDEX_URL"] == index
    assert args["build"]["args"]["PIP_TRUSTED_HOST"] == "pypi.internal.example"
    assert args["build"]["args"]["PIP_EXTRA_INDEX_URL"] == ""


def test_redis_keeps_an_append_only_file_and_never_evicts(compose_config: dict[str, Any]) -> None:
    redis = compose_config["services"]["redis"]
    command = redis["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert command[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert mounts(redis)["/data"] in compose_config["volumes"]


def test_redis_server_accepts_the_compose_command(compose_config: dict[str, Any], redis_config: Any) -> None:
    config = redis_config(compose_config["services"]["redis"]["command"][1:])
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["maxmemory"] == str(512 * 1024 * 1024)
    assert config["save"] == ""


def test_every_service_has_a_healthcheck_and_waits_for_healthy_redis(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert services[name]["healthcheck"]["test"] == ["CMD", "animegan-healthcheck"]
    assert services["api"]["environment"]["ANIMEGAN_HEALTHCHECK"] == "api"
    assert services["worker"]["environment"]["ANIMEGAN_HEALTHCHECK"] == "worker"
    assert services["grafana"]["depends_on"]["prometheus"] == {"condition": "service_healthy"}


def test_api_and_worker_run_one_image_with_their_commands(compose_config: dict[str, Any]) -> None:
    api, worker = compose_config["services"]["api"], compose_config["services"]["worker"]
    assert api["image"] == worker["image"]
    assert api["build"] == worker["build"]
    assert api["command"][:2] == ["animegan", "api"]
    assert api["command"][api["command"].index("--host") + 1] == "0.0.0.0"
    assert worker["command"] == ["animegan", "worker"]


def test_metrics_directory_and_temporary_files_are_in_memory(compose_config: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        service = compose_config["services"][name]
        assert service["environment"]["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
        assert any(entry.split(":")[0] == "/tmp" for entry in service["tmpfs"]), name


def test_worker_memory_limit_defaults_to_768m_and_follows_the_environment(
    compose_config: dict[str, Any], render_compose: Any
) -> None:
    default = compose_config["services"]["worker"]
    assert default["mem_limit"] == default["memswap_limit"] == "768m"
    raised = render_compose({"ANIMEGAN_WORKER_MEM_LIMIT": "1536m"})["services"]["worker"]
    assert raised["mem_limit"] == raised["memswap_limit"] == "1536m"


def test_worker_stop_grace_period_exceeds_the_task_time_limit(compose_config: dict[str, Any]) -> None:
    worker = compose_config["services"]["worker"]
    grace = worker["stop_grace_period"]
    assert grace.endswith("s")
    assert int(grace[:-1]) > int(worker["environment"]["ANIMEGAN_TASK_TIME_LIMIT_S"])


def test_a_setting_from_the_environment_reaches_both_services(render_compose: Any) -> None:
    services = render_compose({"ANIMEGAN_MAX_SIDE": "768", "ANIMEGAN_THREADS": "3"})["services"]
    assert services["api"]["environment"]["ANIMEGAN_MAX_SIDE"] == "768"
    assert services["worker"]["environment"]["ANIMEGAN_THREADS"] == "3"
    assert services["worker"]["environment"]["ANIMEGAN_BROKER_URL"] is None


def test_monitoring_mounts_point_at_files_in_the_repository(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    found = mounts(services["prometheus"]) | mounts(services["grafana"])
    assert found["/etc/prometheus/prometheus.yml"] == str(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    assert found["/etc/prometheus/rules"] == str(ROOT / "charts" / "animegan" / "alerts")
    assert found["/etc/grafana/provisioning"] == str(ROOT / "deploy" / "grafana" / "provisioning")
    assert found["/var/lib/grafana/dashboards/animegan"] == str(ROOT / "charts" / "animegan" / "dashboards")
    assert (ROOT / "deploy" / "prometheus" / "prometheus.yml").is_file()
    assert (ROOT / "deploy" / "grafana" / "provisioning").is_dir()
