"""GET /docs (Swagger UI) and GET /redoc (ReDoc), from files the service ships: no CDN, works offline.

FastAPI's own doc pages load their scripts from a CDN (a blank page offline, and blocked by any
strict Content-Security-Policy) and start them with an inline script. These pages instead load:

- the Swagger UI and ReDoc bundles shipped in the ``fastapi-offline`` wheel (MIT; it carries
  swagger-ui-dist 5, Apache-2.0, and redoc 2, MIT, unmodified) — only its files are used;
- a start-up script per page from ``api/static/`` (ours), which reads the schema URL from a
  ``data-`` attribute, so no inline script is needed.

Both pages get a policy that allows this origin only (``DOCS_CSP``). Assets are streamed from
the installed files (never held in the gateway's memory) and revalidated by ETag. Wire it with
``install_docs(app)`` on an app built with ``docs_url=None, redoc_url=None``.
"""

from __future__ import annotations

import hashlib
import html
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

ASSETS_PATH = "/docs/assets"
# This origin only; Swagger UI's stylesheet embeds its icons as data: URIs.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# ReDoc writes its styles into <style> elements at run time (styled-components, and a style-loader
# sheet injected before any option could give it a nonce), and runs its search index in a Worker
# made from a blob: URL of its own code. Scripts and every fetch stay on this origin.
REDOC_CSP = DOCS_CSP.replace(
    "default-src 'self';", "default-src 'self'; style-src 'self' 'unsafe-inline'; worker-src 'self' blob:;"
)
HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_JS = "text/javascript; charset=utf-8"
# name -> (package holding it, path inside that package, media type)
ASSETS: dict[str, tuple[str, str, str]] = {
    "swagger-ui-bundle.js": ("fastapi_offline", "static/swagger-ui-bundle.js", _JS),
    "swagger-ui.css": ("fastapi_offline", "static/swagger-ui.css", "text/css; charset=utf-8"),
    "redoc.standalone.js": ("fastapi_offline", "static/redoc.standalone.js", _JS),
    "favicon.png": ("fastapi_offline", "static/favicon.png", "image/png"),
    "swagger-init.js": ("api", "static/swagger-init.js", _JS),
    "redoc-init.js": ("api", "static/redoc-init.js", _JS),
}

# The one resource the ReDoc bundle fetches from elsewhere is the Redocly logo in its menu footer;
# served with that URL replaced by an empty data: image (the bundle hides an image that fails).
PATCHES: dict[str, tuple[bytes, bytes]] = {
    "redoc.standalone.js": (b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"', b'src:"data:,"'),
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/favicon.png">
{head}
</head>
<body>
<div id="{element}" data-openapi-url="{openapi_url}"></div>
{scripts}
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets on ``app`` (whose own doc routes are turned off)."""
    app.include_router(router)


@cache
def asset_file(name: str) -> Path:
    package, path, _ = ASSETS[name]
    return Path(str(files(package).joinpath(path)))


def _page(request: Request, *, title: str, element: str, head: str, scripts: list[str], csp: str) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    assets = html.escape(f"{root}{ASSETS_PATH}")
    openapi_url = html.escape(f"{root}{request.app.openapi_url}")
    body = _PAGE.format(
        title=html.escape(f"{request.app.title} - {title}"),
        assets=assets,
        head=head.format(assets=assets),
        element=element,
        openapi_url=openapi_url,
        scripts="\n".join(f'<script src="{assets}/{name}"></script>' for name in scripts),
    )
    return HTMLResponse(body, headers={**HEADERS, "Content-Security-Policy": csp})


@router.get("/docs")
async def read_swagger_ui(request: Request) -> HTMLResponse:
    """Interactive API documentation (Swagger UI)."""
    head = '<link rel="stylesheet" href="{assets}/swagger-ui.css">'
    scripts = ["swagger-ui-bundle.js", "swagger-init.js"]
    return _page(request, title="Swagger UI", element="swagger-ui", head=head, scripts=scripts, csp=DOCS_CSP)


@router.get("/redoc")
async def read_redoc(request: Request) -> HTMLResponse:
    """API reference (ReDoc)."""
    scripts = ["redoc.standalone.js", "redoc-init.js"]
    return _page(request, title="ReDoc", element="redoc", head="", scripts=scripts, csp=REDOC_CSP)


@cache
def patched_asset(name: str) -> tuple[bytes, str]:
    """A bundle with its external URL replaced, and its ETag (read once per process, on first use)."""
    old, new = PATCHES[name]
    body = asset_file(name).read_bytes().replace(old, new)
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@router.get(ASSETS_PATH + "/{name}")
async def read_docs_asset(name: str, request: Request) -> Response:
    """A script, style sheet or icon of the doc pages (a fixed list; anything else is 404)."""
    if name not in ASSETS:
        raise HTTPException(status_code=404)
    media_type = ASSETS[name][2]
    if name in PATCHES:
        body, etag = patched_asset(name)
        headers = {"Cache-Control": "no-cache", "ETag": etag}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)
    path = asset_file(name)
    response = FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"}, stat_result=path.stat())
    etag = response.headers.get("etag", "")
    if etag and etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    return response
