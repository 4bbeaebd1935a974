"""The built site shows what the code has: every ANIMEGAN_* variable, metric family, problem type, Redis key.

Each list is taken from the code independently of the generators (a scan of the source, the
registry of the metric objects, the problem tables), so a generator that skipped something fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from animegan.docsite import keys_table, reference, settings_table, variables
from animegan.docsite.markdown_table import prose
from api.config import ApiSettings
from api.ops import scrape
from api.problems import PROBLEMS
from jobstore.records import ErrorCode
from telemetry.host import HostCollector
from worker import metrics as worker_metrics

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ["api", "worker", "jobstore", "telemetry", "inference", "imaging", "video", "animegan", "loadtest"]
METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z0-9_:.{}-]+", text))


def test_every_animegan_variable_of_the_code_compose_and_env_example_is_in_the_site(
    site_text: dict[str, str],
) -> None:
    mentioned = variables.mentioned_variables()
    # The scan reads the code, the compose file and .env.example (a variable each of them alone has).
    assert "docker-compose.yml" in mentioned["ANIMEGAN_API_MEM_LIMIT"]
    assert ".env.example" in mentioned["ANIMEGAN_WEIGHTS_HOST_DIR"]
    assert "deploy/healthcheck.sh" in mentioned["ANIMEGAN_WORKER_NODE"]
    assert "loadtest/locustfile.py" in mentioned["ANIMEGAN_LOADTEST_PACE_S"]
    shown = set().union(*(_words(text) for text in site_text.values()))
    missing = {name: sorted(files) for name, files in mentioned.items() if name not in shown}
    assert not missing, f"variables used but not documented in the site: {missing}"


def test_every_setting_is_in_the_settings_reference_with_its_default(site_text: dict[str, str]) -> None:
    page = site_text["reference/settings.html"]
    for cls in settings_table.PROCESSES.values():
        for name, field in cls.model_fields.items():
            variable = f"ANIMEGAN_{name.upper()}"
            row = page[page.index(variable) :][:2000]
            default = field.get_default(call_default_factory=True)
            if isinstance(default, int | float | str) and not isinstance(default, bool):
                assert str(default) in row, f"{variable}: default {default!r} not shown"
            assert field.description is not None
            # Compared without white space: the page's markup splits the text around its code spans.
            words = "".join(field.description.replace("`", "").split())
            assert words[:40] in "".join(row.split()), f"{variable}: no description"


def test_the_variable_scan_reads_code_and_skips_tests_and_virtualenvs(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text('os.environ["ANIMEGAN_NEW_KNOB"]  # and f"ANIMEGAN_{name}"\n')
    (tmp_path / "docker-compose.yml").write_text("x: ${ANIMEGAN_COMPOSE_ONLY:-1}\n")
    for ignored in ("tests", ".venv", "docs"):
        (tmp_path / ignored).mkdir()
        (tmp_path / ignored / "x.py").write_text("ANIMEGAN_NOT_CODE = 1\n")
    assert set(variables.mentioned_variables(tmp_path)) == {"ANIMEGAN_NEW_KNOB", "ANIMEGAN_COMPOSE_ONLY"}


def _registry_families() -> set[str]:
    """Every family the gateway and the workers can expose (the imports put both in the default registry)."""
    assert worker_metrics.JOBS in REGISTRY._collector_to_names
    figures = scrape.StoreFigures(queue_depth=1, used_memory=1, max_memory=1, worker_processes=1)
    names = set()
    for collector in (REGISTRY, HostCollector(), scrape.StoreCollector(figures, ApiSettings())):
        for family in collector.collect():
            if family.name.startswith("animegan_"):
                names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def _source_families() -> set[str]:
    """Families defined in the source with a literal name: metric objects and *MetricFamily collectors."""
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
                    continue
                callee = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                name = str(node.args[0].value)
                namespace = next((k.value for k in node.keywords if k.arg == "namespace"), None)
                if callee in METRIC_CLASSES and isinstance(namespace, ast.Constant):
                    name = f"{namespace.value}_{name}"
                elif not (callee.endswith("MetricFamily") and name.startswith("animegan_")):
                    continue
                names.add(name + ("_total" if callee.startswith("Counter") else ""))
    return names


def test_every_metric_family_the_service_exports_is_in_the_metrics_reference(site_text: dict[str, str]) -> None:
    exported = _registry_families() | _source_families()
    assert {"animegan_jobs_total", "animegan_queue_depth", "animegan_host_cpus", "animegan_redis_up"} <= exported
    shown = _words(site_text["reference/metrics.html"])
    missing = sorted(name for name in exported if name not in shown)
    assert not missing, f"metric families exported but not in the metrics reference: {missing}"


def test_every_problem_type_has_its_section_in_the_problems_reference(built_site: Path) -> None:
    page = (built_site / "reference" / "problems.html").read_text()
    slugs = set(PROBLEMS) | {code.value for code in ErrorCode}
    missing = sorted(slug for slug in slugs if f'id="{slug}"' not in page)
    assert not missing, f"problem types without a section: {missing}"


def test_every_redis_key_of_the_layout_is_in_the_redis_keys_reference(site_text: dict[str, str]) -> None:
    shown = " ".join(site_text["reference/redis-keys.html"].split())
    rows = keys_table.check_layout()
    assert len(rows) >= len(keys_table.built_keys()) - 2  # a row may cover several builders, not many
    for row in rows:
        assert "animegan:" + row[0].split("``")[1] in shown


def test_a_key_missing_from_the_layout_stops_the_reference() -> None:
    docstring = keys_table.keys.__doc__ or ""
    without_jobs = "\n".join(line for line in docstring.splitlines() if not line.startswith("``job:{id}``"))
    with pytest.raises(keys_table.UndocumentedKey, match="job_key"):
        keys_table.check_layout(without_jobs)


def test_the_layout_table_keeps_overflowing_words_in_their_column() -> None:
    waiting = next(row for row in keys_table.layout_rows() if row[0] == "``waiting``")
    assert waiting[2] == "none (members removed)"
    assert waiting[3] == "api adds, worker claims"


class _Undocumented(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANIMEGAN_", use_attribute_docstrings=True)

    documented: int = Field(default=1, ge=0)
    """Has a description."""
    bare: int = 2


def test_a_setting_without_a_docstring_stops_the_reference() -> None:
    with pytest.raises(settings_table.UndocumentedSetting, match="ANIMEGAN_BARE"):
        settings_table.settings({"api": _Undocumented})


def test_settings_are_described_with_type_bounds_default_and_readers() -> None:
    found = {setting.variable: setting for setting in settings_table.settings()}
    side = found["ANIMEGAN_MAX_SIDE"]
    assert (side.kind, side.default, side.readers) == ("integer, ≥ 16, ≤ 8192", "`1024`", ("api",))
    assert found["ANIMEGAN_REDIS_URL"].readers == ("api", "worker")
    assert found["ANIMEGAN_PRECISION"].kind == "`auto`, `fp32`, `bf16` or `int8`"
    assert found["ANIMEGAN_WEBHOOK_RETRY_SCHEDULE_S"].default == "`0,30,120,480,1200,1800`"
    assert found["ANIMEGAN_BROKER_URL"].default == "*unset*"
    assert found["ANIMEGAN_REDIS_MAXMEMORY"].readers == ("animegan serve",)


def test_every_settings_class_of_the_project_is_documented() -> None:
    """A settings class the reference does not know (a new process's) fails here, not silently."""
    documented = {cls.__name__ for process in settings_table.PROCESSES.values() for cls in process.__mro__}
    defined = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and any(
                    getattr(base, "id", "").endswith("Settings") for base in node.bases
                ):
                    defined.add(node.name)
    assert defined
    assert defined <= documented, (
        f"settings classes missing from animegan.docsite.settings_table: {defined - documented}"
    )


def test_an_unknown_marker_fails_and_known_ones_are_filled() -> None:
    with pytest.raises(reference.UnknownMarker):
        reference.fill("# Page\n\n<!-- generated: nothing-like-this -->\n")
    filled = reference.fill("<!-- generated: redis-keys -->\n")
    assert "`animegan:waiting`" in filled


def test_text_from_the_code_is_escaped_outside_code_spans() -> None:
    assert prose("reads /proc/<pid>/io and `<style>.pt`") == "reads /proc/&lt;pid&gt;/io and `<style>.pt`"
