"""The in-chart Redis is always bounded: maxmemory from values, in Redis's own units, never 0 (unbounded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHART = Path(__file__).resolve().parents[3] / "charts" / "animegan"


def _redis_command(objects: list[dict[str, Any]]) -> list[str]:
    redis = next(o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"].endswith("-redis"))
    return list(redis["spec"]["template"]["spec"]["containers"][0]["command"])


def test_redis_maxmemory_comes_from_values_and_redis_reads_it(helm_template: Any, redis_config: Any) -> None:
    command = _redis_command(helm_template("--set", "redis.maxmemory=1gb"))
    assert command[command.index("--maxmemory") + 1] == "1gb"
    config = redis_config(command[1:])
    assert config["maxmemory"] == str(1024**3)
    assert config["maxmemory-policy"] == "noeviction"


@pytest.mark.parametrize("value", ["0", "0mb", "512MB", "lots", "-1"])
def test_an_unbounded_or_malformed_maxmemory_is_refused_by_the_schema(run: Any, value: str) -> None:
    done = run(["helm", "template", "rel", str(CHART), "--set-string", f"redis.maxmemory={value}"])
    assert done.returncode != 0
    assert "maxmemory" in done.stderr
