"""The README stays a short front page: under 250 lines, a true diagram, examples that call what exists,
links into every page of the site, and no hand-written copy of the generated reference."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from animegan.client import AsyncClient, Client
from animegan.docsite import links
from api.config import ApiSettings
from api.main import create_app

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
# Nothing answers there: building the app's routes needs no Redis.
NO_REDIS = "redis://127.0.0.1:9/0"


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    return []


def test_readme_is_at_most_250_lines() -> None:
    assert len(README.read_text().splitlines()) <= 250


def test_readme_links_to_every_page_of_the_site() -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages = {f"docs/{page}" for page in _nav_pages(nav)}
    assert "docs/reference/settings.md" in pages
    assert len(pages) > 30
    linked = {target.split("#")[0] for _, target in links.markdown_links(README.read_text())}
    assert not pages - linked, f"site pages the README does not link: {sorted(pages - linked)}"


def test_readme_keeps_no_hand_written_reference_table() -> None:
    """Settings, metrics and problem types are generated into the site; a README copy would drift."""
    rows = [line for line in README.read_text().splitlines() if line.startswith("|")]
    copied = [row for row in rows if re.match(r"\| *(`ANIMEGAN_|`animegan_|\d{3} *\| *`/problems/)", row)]
    assert not copied, copied


def test_readme_diagram_shows_the_engine_that_runs() -> None:
    diagram = _code_blocks(README.read_text(), "")[0]
    for part in ("api/", "Redis", "S3", "worker/", "oneDNN", "fp32", "bf16", "int8"):
        assert part in diagram, part
    assert "ONNX" not in diagram
    assert "OpenVINO" not in diagram


def test_readme_python_example_calls_methods_the_client_has() -> None:
    [example] = [block for block in _code_blocks(README.read_text(), "python") if "Client(" in block]
    called = {
        node.func.attr
        for node in ast.walk(ast.parse(example))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "client"
    }
    assert {"submit", "wait", "result"} <= called
    for name in called:
        assert callable(getattr(Client, name, None)), name
        assert callable(getattr(AsyncClient, name, None)), name


def test_readme_curl_example_uses_routes_and_fields_the_gateway_has() -> None:
    [example] = [block for block in _code_blocks(README.read_text(), "sh") if "curl" in block and "/stylize" in block]
    openapi = create_app(ApiSettings(redis_url=NO_REDIS)).openapi()
    urls = re.findall(r"http://127\.0\.0\.1:8000(/\S*)", example)
    assert len(urls) == 3
    for url in urls:
        template = re.sub(r"/jobs/[^/]+", "/jobs/{job_id}", url)
        assert template in openapi["paths"], url
    form = openapi["paths"]["/stylize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    for field, value in re.findall(r"-F (\w+)=(\S+)", example):
        assert field in form["properties"], field
        assert value in form["properties"][field].get("enum", [value]), (field, value)
