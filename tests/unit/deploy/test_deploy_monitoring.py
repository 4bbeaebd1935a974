"""The compose stack's Prometheus scrape config and Grafana provisioning agree with the services they watch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"


def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_promtool_accepts_the_scrape_config_with_the_charts_rule_files(tmp_path: Path, run: Any) -> None:
    # rule_files names the container's path; point a copy at the repository's rule files instead.
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["rule_files"] = [str(ROOT / "charts" / "animegan" / "alerts" / "*.yaml")]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    done = run(["promtool", "check", "config", str(checked)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_scrapes_every_api_and_worker_replica_on_their_ports(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    jobs = scrape_jobs()
    api_command = services["api"]["command"]
    expected = {
        "animegan-api": ("api", int(api_command[api_command.index("--port") + 1])),
        "animegan-worker": ("worker", int(services["worker"]["environment"]["ANIMEGAN_METRICS_PORT"])),
    }
    for job_name, (service, port) in expected.items():
        (discovery,) = jobs[job_name]["dns_sd_configs"]
        assert discovery["names"] == [service]
        assert discovery["type"] == "A"
        assert discovery["port"] == port
        assert jobs[job_name].get("metrics_path", "/metrics") == "/metrics"


def test_prometheus_loads_the_charts_alert_rules(compose_config: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yaml"]
    volumes = compose_config["services"]["prometheus"]["volumes"]
    assert f"{ROOT / 'charts' / 'animegan' / 'alerts'}:/etc/prometheus/rules:ro" in volumes


def test_grafana_datasource_points_at_the_prometheus_service(compose_config: dict[str, Any]) -> None:
    provisioning = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    (datasource,) = provisioning["datasources"]
    assert provisioning["apiVersion"] == 1
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == "prometheus"
    assert datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose_config["services"]
    assert (
        datasource["jsonData"]["timeInterval"]
        == yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["scrape_interval"]
    )


def test_grafana_dashboard_provider_reads_the_mounted_chart_dashboards(compose_config: dict[str, Any]) -> None:
    provisioning = yaml.safe_load((PROVISIONING / "dashboards" / "animegan.yaml").read_text())
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file"
    mount = f"{ROOT / 'charts' / 'animegan' / 'dashboards'}:{provider['options']['path']}:ro"
    assert mount in compose_config["services"]["grafana"]["volumes"]
