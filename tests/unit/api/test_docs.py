"""GET /docs, /redoc and /docs/assets/*: pages and assets the service ships, under a this-origin-only CSP.

The pages in a real browser (rendering, zero requests off the machine, no CSP violation) are
tests/e2e/test_docs_browser.py.
"""

from __future__ import annotations

import re

import httpx
import pytest

from api.config import ApiSettings
from api.edge.docs import ASSETS, DOCS_CSP, PATCHES, REDOC_CSP, asset_file
from api.main import create_app

pytestmark = pytest.mark.anyio

EXTERNAL = re.compile(r"""(?:src|href)=["'](?:https?:)?//""")


async def _get(path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    app = create_app(ApiSettings(redis_url="redis://127.0.0.1:9/0"))  # Redis is never contacted here
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.get(path, headers=headers)


@pytest.mark.parametrize(("path", "csp"), [("/docs", DOCS_CSP), ("/redoc", REDOC_CSP)])
async def test_doc_pages_load_only_shipped_assets_under_their_own_csp(path: str, csp: str) -> None:
    response = await _get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == csp
    assert response.headers["x-frame-options"] == "DENY"
    assert not EXTERNAL.search(response.text), response.text
    assert "<script>" not in response.text  # no inline script: script-src is this origin only
    assert 'data-openapi-url="/openapi.json"' in response.text
    for name in re.findall(r'(?:src|href)="/docs/assets/([^"]+)"', response.text):
        assert name in ASSETS


def test_doc_policies_allow_no_other_origin() -> None:
    for csp in (DOCS_CSP, REDOC_CSP):
        sources = {token for directive in csp.split(";") for token in directive.split()[1:]}
        assert sources <= {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}, csp
        assert "script-src" not in csp  # falls back to default-src 'self'
    assert "'unsafe-inline'" not in DOCS_CSP


@pytest.mark.parametrize("name", sorted(ASSETS))
async def test_every_asset_is_served_with_its_type_and_revalidates(name: str) -> None:
    response = await _get(f"/docs/assets/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == ASSETS[name][2]
    assert response.headers["cache-control"] == "no-cache"
    assert len(response.content) > 100
    again = await _get(f"/docs/assets/{name}", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


async def test_the_redoc_bundle_is_served_without_its_one_external_resource() -> None:
    response = await _get("/docs/assets/redoc.standalone.js")
    old, new = PATCHES["redoc.standalone.js"]
    assert old in asset_file("redoc.standalone.js").read_bytes()  # still the bundle this patch was made for
    assert old not in response.content
    assert new in response.content
    assert b"cdn.redoc.ly" not in response.content


@pytest.mark.parametrize("path", ["/docs/assets/app.js", "/docs/assets/..%2Fmain.py", "/docs/assets/LICENSE"])
async def test_unknown_assets_are_404(path: str) -> None:
    response = await _get(path)
    assert response.status_code == 404


async def test_openapi_schema_still_served_and_doc_routes_not_in_it() -> None:
    response = await _get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/stylize" in paths
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]
