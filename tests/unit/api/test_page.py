"""GET / and /static/*: content types, security headers, revalidation, and a page that needs nothing
from outside this origin (the service may run offline)."""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from api.config import ApiSettings
from api.edge.page import ASSET_TYPES, CONTENT_SECURITY_POLICY
from api.main import create_app
from api.problems import PROBLEM_MEDIA_TYPE

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
STATIC = ROOT / "api" / "static"
LIMIT = 3 * 1024 * 1024


async def _get(path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    # Nothing here touches Redis: the address only has to parse.
    app = create_app(ApiSettings(redis_url="redis://127.0.0.1:9/0", max_upload_bytes=LIMIT))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in {"src", "href", "action"} and value is not None:
                self.urls.append(value)


def _parsed_page() -> _Collector:
    collector = _Collector()
    collector.feed((STATIC / "index.html").read_text())
    return collector


async def test_page_is_html_with_a_strict_security_policy() -> None:
    response = await _get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in policy
    assert "img-src 'self' blob: data:" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<script type="module" src="/static/app.js">' in response.text


async def test_page_carries_the_configured_upload_limit() -> None:
    response = await _get("/")
    assert f'data-max-upload-bytes="{LIMIT}"' in response.text
    assert 'data-max-video-bytes="104857600"' in response.text
    assert "{{" not in response.text


@pytest.mark.parametrize(("name", "media_type"), sorted(ASSET_TYPES.items()))
async def test_assets_are_served_with_their_content_type(name: str, media_type: str) -> None:
    response = await _get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (STATIC / name).read_bytes()


@pytest.mark.parametrize("name", ["nope.js", "index.html", "..%2Fpage.py", "%2E%2E%2Fconfig.py"])
async def test_unlisted_asset_is_a_404_problem(name: str) -> None:
    response = await _get(f"/static/{name}")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE


@pytest.mark.parametrize("path", ["/", "/static/app.js"])
async def test_unchanged_file_revalidates_with_304(path: str) -> None:
    first = await _get(path)
    assert first.headers["cache-control"] == "no-cache"
    again = await _get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_page_loads_nothing_from_other_origins() -> None:
    for url in _parsed_page().urls:
        assert url.startswith(("/", "#", "data:")), url
        assert not url.startswith("//"), url
    for name in ASSET_TYPES:
        text = (STATIC / name).read_text()
        assert not re.search(r"https?://|@import|url\(", text), name


def test_every_element_the_script_looks_up_exists_in_the_page() -> None:
    wanted = set(re.findall(r'\$\("([\w-]+)"\)', (STATIC / "app.js").read_text()))
    assert wanted, "app.js looks elements up with $(id)"
    assert wanted <= _parsed_page().ids


def test_page_form_controls_have_labels() -> None:
    html = (STATIC / "index.html").read_text()
    for control in re.findall(r'<(?:input|select)[^>]*\bid="([\w-]+)"', html):
        assert f'for="{control}"' in html, control


def test_static_files_ship_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "static/*" in config["tool"]["setuptools"]["package-data"]["api"]
    # "static/*" does not descend into folders: the page must stay flat.
    assert all(path.is_file() for path in STATIC.iterdir())
    packaged = files("api").joinpath("static")
    for name in ["index.html", *ASSET_TYPES]:
        assert packaged.joinpath(name).is_file(), name


def test_the_page_accepts_heic_and_offers_every_output_format() -> None:
    from imaging.formats import OUTPUT_FORMATS

    html = (STATIC / "index.html").read_text()
    accept = re.search(r'id="image"[^>]*accept="([^"]+)"', html, flags=re.S)
    assert accept is not None
    assert {"image/heic", "image/heif", ".heic"} <= set(accept.group(1).split(","))
    offered = set(re.findall(r'<option value="([a-z]+)">', html))
    assert set(OUTPUT_FORMATS) <= offered
    script = (STATIC / "app.js").read_text()
    assert all(f"{fmt}:" in script.split("const EXTENSIONS", 1)[1].split(";", 1)[0] for fmt in OUTPUT_FORMATS)


def test_the_page_accepts_clips_and_sends_them_to_post_videos() -> None:
    html = (STATIC / "index.html").read_text()
    accept = re.search(r'id="image"[^>]*accept="([^"]+)"', html, flags=re.S)
    assert accept is not None
    assert {"video/mp4", "video/quicktime", "video/webm", ".mkv"} <= set(accept.group(1).split(","))
    script = (STATIC / "app.js").read_text()
    assert '"/videos"' in script
    assert "media-src 'self' blob:" in CONTENT_SECURITY_POLICY
