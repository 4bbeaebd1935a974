"""GET / (the web page) and GET /static/{name} (its script and style sheet).

The page is three files shipped inside the package (``api/static``, package data in the wheel):
no build step, no external resources, so it works offline. The HTML gets a strict Content
Security Policy: everything comes from this origin; images may also be ``blob:`` (the local
"before" picture) or ``data:``, media ``blob:`` (a stylized clip, fetched with the API key).
Files are read once per process and revalidated by ETag.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, HTTPException, Request, Response

from api.deps import SettingsDep

router = APIRouter(include_in_schema=False)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files that change with a deploy: always revalidate, the ETag makes that cheap.
    "Cache-Control": "no-cache",
}
PAGE_HEADERS = {**COMMON_HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY"}
ASSET_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# index.html carries the upload limits so the page can refuse an oversize photo or clip before sending it.
LIMIT_PLACEHOLDER = b"{{max_upload_bytes}}"
VIDEO_LIMIT_PLACEHOLDER = b"{{max_video_bytes}}"


@cache
def read_asset(name: str) -> bytes:
    return files("api").joinpath("static", name).read_bytes()


@cache
def render_page(max_upload_bytes: int, max_video_bytes: int = 0) -> bytes:
    page = read_asset("index.html").replace(LIMIT_PLACEHOLDER, str(max_upload_bytes).encode())
    return page.replace(VIDEO_LIMIT_PLACEHOLDER, str(max_video_bytes).encode())


def _respond(request: Request, body: bytes, media_type: str, headers: dict[str, str]) -> Response:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**headers, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


@router.get("/")
async def read_page(request: Request, settings: SettingsDep) -> Response:
    """The web page: upload a photo or a clip, follow the job, compare (or play) and download."""
    page = render_page(settings.max_upload_bytes, settings.max_video_bytes)
    return _respond(request, page, "text/html; charset=utf-8", PAGE_HEADERS)


@router.get("/static/{name}")
async def read_static(name: str, request: Request) -> Response:
    """The page's script and style sheet (only the files listed in ASSET_TYPES)."""
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"No static file {name[:64]!r}.")
    return _respond(request, read_asset(name), media_type, COMMON_HEADERS)
