"""The Helm chart: values documented and schema-valid, templates lint and render to valid Kubernetes objects.

`helm lint --strict` and `helm template` run the real helm binary (scripts/setup.sh installs it);
rendered built-in kinds are validated against the Kubernetes API schemas (kubernetes-validate,
strict: unknown fields fail). The custom resources (KEDA, Prometheus Operator) are checked by
structure here; nothing is applied to a cluster.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from jobstore.keys import WAITING_KEY

CHART = Path(__file__).resolve().parents[3] / "charts" / "animegan"
KUBERNETES_VERSION = "1.30"
SCENARIOS = sorted(path.name for path in (CHART / "ci").glob("*-values.yaml"))
BUILT_IN_KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
    "StatefulSet",
}
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}
# Settings the chart deliberately sets to something other than the code default (default values).
CHART_OVERRIDES = {
    "api": {"ANIMEGAN_LOG_FORMAT": "json", "ANIMEGAN_REDIS_URL": "redis://rel-animegan-redis:6379/0"},
    "worker": {
        "ANIMEGAN_LOG_FORMAT": "json",
        "ANIMEGAN_REDIS_URL": "redis://rel-animegan-redis:6379/0",
        "ANIMEGAN_CACHE_DIR": "/var/cache/animegan",
        "ANIMEGAN_WORKER_CONCURRENCY": 1,
        "ANIMEGAN_THREADS": 1,
        "ANIMEGAN_METRICS_PORT": 9100,
    },
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of a values file over values.yaml (maps merge, anything else replaces)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def values_file(scenario: str) -> str:
    return str(CHART / "ci" / scenario)


def find(objects: list[dict[str, Any]], kind: str, component: str | None = None) -> list[dict[str, Any]]:
    return [
        obj
        for obj in objects
        if obj["kind"] == kind
        and (component is None or obj["metadata"]["labels"].get("app.kubernetes.io/component") == component)
    ]


def one(objects: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, component)
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def container_env(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def resolved_env(deployment: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    """A container's environment with secretKeyRefs resolved against the rendered Secrets."""
    secrets = {obj["metadata"]["name"]: obj.get("stringData", {}) for obj in find(objects, "Secret")}
    env = {}
    for entry in container_env(deployment):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def value_paths(values: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(values, dict):
        for key, value in values.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from value_paths(value, path)


# --- files --------------------------------------------------------------------------------------


def test_chart_yaml_declares_an_application_chart() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "animegan"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    # appVersion is the default image tag: the project's version.
    assert chart["appVersion"] == tomllib.loads((CHART.parents[1] / "pyproject.toml").read_text())["project"]["version"]
    assert chart["description"]


def test_every_non_template_yaml_file_parses() -> None:
    files = [path for path in CHART.rglob("*.yaml") if "templates" not in path.parts]
    assert len(files) >= 6
    for path in files:
        list(yaml.safe_load_all(path.read_text()))


def test_every_value_has_a_comment_above_it() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        if not re.match(r"^\s*[A-Za-z_][\w.-]*:", line):
            continue
        previous = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        if not previous.lstrip().startswith("#"):
            undocumented.append(f"line {number + 1}: {line.strip()}")
    assert not undocumented, "values without a comment above them:\n" + "\n".join(undocumented)


def test_values_schema_is_a_valid_draft7_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)


@pytest.mark.parametrize("scenario", ["values.yaml", *SCENARIOS])
def test_values_and_every_ci_scenario_validate_against_the_schema(chart_values: dict[str, Any], scenario: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = chart_values
    if scenario != "values.yaml":
        values = deep_merge(chart_values, yaml.safe_load((CHART / "ci" / scenario).read_text()) or {})
    jsonschema.Draft7Validator(schema).validate(values)


def test_schema_rejects_a_misspelt_value(chart_values: dict[str, Any]) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    misspelt = deep_merge(chart_values, {"worker": {"concurency": 2}})
    with pytest.raises(jsonschema.ValidationError, match="concurency"):
        jsonschema.Draft7Validator(schema).validate(misspelt)


def test_templates_reference_only_values_that_exist(chart_values: dict[str, Any]) -> None:
    known = set(value_paths(chart_values))
    unknown = []
    for template in sorted((CHART / "templates").iterdir()):
        for path in re.findall(r"\.Values\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", template.read_text()):
            if path not in known:
                unknown.append(f"{template.name}: .Values.{path}")
    assert not unknown, "templates use values that values.yaml does not define:\n" + "\n".join(unknown)


def test_config_keys_are_settings_fields(chart_values: dict[str, Any], settings_env: Any) -> None:
    fields = settings_env.fields()
    snake = {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower() for key in chart_values["config"]}
    assert snake <= fields, f"config keys that are no settings field: {sorted(snake - fields)}"


def test_shipped_dashboards_and_alert_rules_parse() -> None:
    for path in (CHART / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        assert dashboard.get("title"), path.name
    for path in (CHART / "alerts").glob("*.yaml"):
        assert isinstance(yaml.safe_load(path.read_text()), dict), path.name


# --- helm ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_passes(scenario: str, run: Any) -> None:
    done = run(["helm", "lint", "--strict", str(CHART), "--values", str(CHART / "ci" / scenario)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_ci_scenarios_cover_the_documented_cases() -> None:
    assert {"default", "keda-enabled", "external-redis", "monitoring-enabled"} <= {
        name.removesuffix("-values.yaml") for name in SCENARIOS
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_objects_are_valid_kubernetes(scenario: str, helm_template: Any) -> None:
    objects = helm_template("--values", values_file(scenario))
    for obj in objects:
        assert obj["kind"] in BUILT_IN_KINDS | CUSTOM_KINDS, obj["kind"]
        assert len(obj["metadata"]["name"]) <= 63
        assert obj["metadata"]["namespace"] == "animegan"
        if obj["kind"] in BUILT_IN_KINDS:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_workloads_select_their_own_pods(scenario: str, helm_template: Any) -> None:
    objects = helm_template("--values", values_file(scenario))
    for workload in find(objects, "Deployment") + find(objects, "StatefulSet"):
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        assert "helm.sh/chart" not in selector
    for service in find(objects, "Service"):
        component = service["metadata"]["labels"]["app.kubernetes.io/component"]
        pods = find(objects, "Deployment", component) + find(objects, "StatefulSet", component)
        assert len(pods) == 1, service["metadata"]["name"]
        assert service["spec"]["selector"].items() <= pods[0]["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("role", ["api", "worker"])
def test_every_settings_field_can_reach_the_container(
    scenario: str, role: str, helm_template: Any, settings_env: Any
) -> None:
    deployment = one(helm_template("--values", values_file(scenario)), "Deployment", role)
    passed = {entry["name"] for entry in container_env(deployment)}
    settings = set(settings_env.names(role))
    known = settings_env.known()
    assert {name for name in passed if name.startswith("ANIMEGAN_")} <= known
    # Optional settings are left unset unless configured; each has a value that sets it.
    optional = {
        "ANIMEGAN_BROKER_URL",
        "ANIMEGAN_STYLES",
        "ANIMEGAN_WEIGHTS_DIR",
        "ANIMEGAN_THREADS",
        "ANIMEGAN_API_KEYS_FILE",
        "ANIMEGAN_API_METRICS_PORT",
        "ANIMEGAN_TRUSTED_PROXIES",
        "ANIMEGAN_WEBHOOK_SECRET",
        "ANIMEGAN_S3_BUCKET",
        "ANIMEGAN_S3_ENDPOINT_URL",
        "ANIMEGAN_S3_PUBLIC_ENDPOINT_URL",
    }
    assert settings - optional <= passed, f"not passed to {role}: {sorted(settings - optional - passed)}"


def test_optional_settings_are_passed_when_configured(helm_template: Any) -> None:
    objects = helm_template(
        "--set-string",
        "weights.existingClaim=weights,config.styles={face_paint_512_v2,paprika}",
        "--set",
        "redis.enabled=false,externalRedis.url=redis://r:6379/0,externalRedis.brokerUrl=redis://b:6379/0",
        "--set",
        "worker.threads=3",
        "--set",
        "config.apiKeysFile=/etc/animegan/keys,config.apiMetricsPort=9200,config.webhookSecret=0123456789abcdef",
        "--set-string",
        "config.trustedProxies=10.0.0.0/8",
    )
    api = resolved_env(one(objects, "Deployment", "api"), objects)
    assert api["ANIMEGAN_API_KEYS_FILE"] == "/etc/animegan/keys"
    assert api["ANIMEGAN_API_METRICS_PORT"] == "9200"
    assert api["ANIMEGAN_TRUSTED_PROXIES"] == "10.0.0.0/8"
    assert api["ANIMEGAN_WEBHOOK_SECRET"] == "0123456789abcdef"
    worker = resolved_env(one(objects, "Deployment", "worker"), objects)
    assert worker["ANIMEGAN_WEIGHTS_DIR"] == "/weights"
    assert worker["ANIMEGAN_STYLES"] == "face_paint_512_v2,paprika"
    assert worker["ANIMEGAN_BROKER_URL"] == "redis://b:6379/0"
    assert worker["ANIMEGAN_REDIS_URL"] == "redis://r:6379/0"
    assert worker["ANIMEGAN_THREADS"] == "3"


@pytest.mark.parametrize("role", ["api", "worker"])
def test_default_chart_environment_parses_and_matches_the_code_defaults(
    role: str, helm_template: Any, settings_env: Any
) -> None:
    objects = helm_template()
    env = resolved_env(one(objects, "Deployment", role), objects)
    assert settings_env.overridden(role, env) == CHART_OVERRIDES[role]


def test_api_has_liveness_and_readiness_probes_and_a_service(helm_template: Any) -> None:
    objects = helm_template()
    container = one(objects, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["command"][:2] == ["animegan", "api"]
    assert one(objects, "Service", "api")["spec"]["ports"][0]["targetPort"] == "http"


def test_worker_grace_period_exceeds_the_task_time_limit(chart_values: dict[str, Any], helm_template: Any) -> None:
    spec = one(helm_template(), "Deployment", "worker")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > chart_values["config"]["taskTimeLimitS"]
    longer = one(
        helm_template("--set", "config.taskTimeLimitS=900,config.visibilityTimeoutS=3600"), "Deployment", "worker"
    )
    assert longer["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 900


@pytest.mark.parametrize(
    ("cpu", "concurrency", "threads"),
    [("1", 1, "1"), ("2500m", 1, "2"), ("4", 2, "2"), ("500m", 1, "1"), ("3", 1, "3")],
)
def test_worker_threads_follow_the_cpu_request(cpu: str, concurrency: int, threads: str, helm_template: Any) -> None:
    objects = helm_template(
        "--set-string", f"worker.resources.requests.cpu={cpu}", "--set", f"worker.concurrency={concurrency}"
    )
    env = resolved_env(one(objects, "Deployment", "worker"), objects)
    assert env["ANIMEGAN_THREADS"] == threads
    assert env["ANIMEGAN_WORKER_CONCURRENCY"] == str(concurrency)


def test_worker_has_resources_a_liveness_check_and_in_memory_tmp(helm_template: Any) -> None:
    spec = one(helm_template(), "Deployment", "worker")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["resources"]["limits"]["memory"]
    assert container["resources"]["requests"]["cpu"]
    assert container["livenessProbe"]["exec"]["command"] == ["animegan-healthcheck"]
    assert {"name": "ANIMEGAN_HEALTHCHECK", "value": "worker"} in container["env"]
    tmp = next(volume for volume in spec["volumes"] if volume["name"] == "tmp")
    assert tmp["emptyDir"]["medium"] == "Memory"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_default_chart_runs_redis_in_chart_with_aof_and_noeviction(helm_template: Any) -> None:
    objects = helm_template("--values", values_file("default-values.yaml"))
    redis = one(objects, "StatefulSet", "redis")
    command = redis["spec"]["template"]["spec"]["containers"][0]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert len(find(objects, "PodDisruptionBudget")) == 2
    assert not find(objects, "ScaledObject")
    assert not find(objects, "ServiceMonitor")
    assert one(objects, "Deployment", "api")["spec"]["replicas"] == 2


def test_redis_server_accepts_the_chart_command(helm_template: Any, redis_config: Any) -> None:
    redis = one(helm_template(), "StatefulSet", "redis")
    command = redis["spec"]["template"]["spec"]["containers"][0]["command"]
    config = redis_config(command[1:])
    assert config["appendonly"] == "yes"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["maxmemory"] == str(512 * 1024 * 1024)


def test_keda_scenario_scales_workers_on_the_celery_queue(helm_template: Any) -> None:
    objects = helm_template("--values", values_file("keda-enabled-values.yaml"))
    scaled = one(objects, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment", "worker")["metadata"]["name"]
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == WAITING_KEY  # the one queue depth (jobstore.keys)
    assert trigger["metadata"]["address"] == "rel-animegan-redis.animegan.svc:6379"
    assert all(isinstance(value, str) for value in trigger["metadata"].values())
    assert scaled["spec"]["minReplicaCount"] >= 1
    # KEDA and the HPA own the replica counts: the Deployments must not fight them on upgrade.
    assert "replicas" not in one(objects, "Deployment", "worker")["spec"]
    assert "replicas" not in one(objects, "Deployment", "api")["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment", "api")["metadata"]["name"]


def test_external_redis_scenario_reads_the_url_from_the_existing_secret(helm_template: Any) -> None:
    objects = helm_template("--values", values_file("external-redis-values.yaml"))
    assert not find(objects, "StatefulSet")
    assert not find(objects, "Secret")
    for role in ("api", "worker"):
        entry = next(e for e in container_env(one(objects, "Deployment", role)) if e["name"] == "ANIMEGAN_REDIS_URL")
        assert entry["valueFrom"]["secretKeyRef"] == {"name": "animegan-redis", "key": "redis-url"}
    auth = one(objects, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"][0]["name"] == "animegan-redis"
    trigger = one(objects, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert trigger["metadata"]["address"] == "redis.example.internal:6380"


def test_external_bucket_scenario_passes_the_bucket_and_the_keys_from_the_existing_secret(helm_template: Any) -> None:
    objects = helm_template("--values", values_file("external-bucket-values.yaml"))
    for role in ("api", "worker"):
        deployment = one(objects, "Deployment", role)
        env = {e["name"]: e for e in container_env(deployment)}
        assert env["ANIMEGAN_S3_BUCKET"]["value"] == "animegan-images"
        assert env["ANIMEGAN_S3_ENDPOINT_URL"]["value"] == "https://s3.example.internal"
        assert env["ANIMEGAN_S3_PUBLIC_ENDPOINT_URL"]["value"] == "https://images.example.com"
        assert env["ANIMEGAN_S3_PREFIX"]["value"] == "prod"
        assert env["ANIMEGAN_S3_URL_TTL_S"]["value"] == "900"
        assert env["AWS_REGION"]["value"] == "eu-west-1"
        keys = {name: env[name]["valueFrom"]["secretKeyRef"] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        assert keys == {
            "AWS_ACCESS_KEY_ID": {"name": "animegan-s3", "key": "access-key-id"},
            "AWS_SECRET_ACCESS_KEY": {"name": "animegan-s3", "key": "secret-access-key"},
        }
    # Without a secret the pods carry no keys: web identity or the node's role answers.
    default = {e["name"] for e in container_env(one(helm_template(), "Deployment", "worker"))}
    assert not default & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "ANIMEGAN_S3_BUCKET"}


def test_external_redis_without_a_url_fails_with_a_clear_message(run: Any) -> None:
    done = run(["helm", "template", "rel", str(CHART), "--set", "redis.enabled=false"])
    assert done.returncode != 0
    assert "externalRedis.url or externalRedis.existingSecret is required" in done.stderr


def test_monitoring_scenario_creates_service_monitors_with_stable_job_labels(helm_template: Any) -> None:
    objects = helm_template("--values", values_file("monitoring-enabled-values.yaml"))
    monitors = {m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in find(objects, "ServiceMonitor")}
    assert set(monitors) == {"api", "worker"}
    for component, monitor in monitors.items():
        endpoint = monitor["spec"]["endpoints"][0]
        assert endpoint["path"] == "/metrics"
        assert endpoint["relabelings"][0]["replacement"] == f"animegan-{component}"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        service = one(objects, "Service", component)
        assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    # Headless, so every worker pod is a target.
    assert one(objects, "Service", "worker")["spec"]["clusterIP"] == "None"


def test_dashboards_and_alert_rules_are_packaged_from_their_folders(tmp_path: Path, helm_template: Any) -> None:
    chart = tmp_path / "animegan"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("dashboards", "alerts"))
    (chart / "dashboards").mkdir()
    (chart / "alerts" / "tests").mkdir(parents=True)
    (chart / "dashboards" / "overview.json").write_text('{"title": "AnimeGAN overview", "panels": []}')
    rules = {
        "groups": [
            {
                "name": "animegan",
                "rules": [
                    {
                        "alert": "QueueBackingUp",
                        "expr": "animegan_queue_depth > 10",
                        "for": "5m",
                        "annotations": {"summary": "depth {{ $value }}"},
                    }
                ],
            }
        ]
    }
    (chart / "alerts" / "animegan.yaml").write_text(yaml.safe_dump(rules))
    (chart / "alerts" / "tests" / "animegan_test.yaml").write_text("rule_files: [../animegan.yaml]\ntests: []\n")
    objects = helm_template("--values", str(CHART / "ci" / "monitoring-enabled-values.yaml"), chart=chart)
    configmap = one(objects, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["overview.json"])["title"] == "AnimeGAN overview"
    assert one(objects, "PrometheusRule")["spec"]["groups"] == rules["groups"]
    assert not find(helm_template(chart=chart), "ConfigMap"), "the dashboards ConfigMap is off by default"
