"""GET /problems/{slug}: the page a problem document's ``type`` URI leads to (RFC 9457, section 3.1.1).

A small HTML page per problem type (its title, status, when it happens, what to do) and an index at
GET /problems, made from ``api.ops.problem_guide``: the table the docs site's reference is made
from too. An unknown slug is a 404 problem document. The pages load nothing (no script, style or
image), so their Content-Security-Policy allows nothing at all.
"""

from __future__ import annotations

import html
import re
from functools import cache

from fastapi import APIRouter, HTTPException, Response

from api.ops.problem_guide import ProblemType, problem_types
from api.problems import TYPE_PREFIX

router = APIRouter(include_in_schema=False)

CONTENT_SECURITY_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Text that changes only with a deploy.
    "Cache-Control": "public, max-age=3600",
}
_CODE_SPAN = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    """Escape ``text`` for HTML, keeping its `code spans` as <code>."""
    return _CODE_SPAN.sub(r"<code>\1</code>", html.escape(text, quote=False))


def _document(title: str, body: str) -> bytes:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)} · AnimeGAN problem types</title>\n</head>\n<body>\n<main>\n{body}</main>\n"
        "</body>\n</html>\n"
    ).encode()


def _status_line(problem: ProblemType) -> str:
    parts = [f"HTTP status {problem.status}"] if problem.status is not None else []
    if problem.job_error:
        parts.append("the <code>error.type</code> of a failed job")
    return " · ".join(parts)


def render_problem_page(problem: ProblemType) -> bytes:
    slug = problem.slug
    body = (
        f"<h1>{html.escape(problem.title)}</h1>\n"
        f"<p>Problem type <code>{TYPE_PREFIX}{html.escape(slug)}</code>: {_status_line(problem)}.</p>\n"
        + (f"<h2>When it happens</h2>\n<p>{_inline(problem.when)}</p>\n" if problem.when else "")
        + (f"<h2>What to do</h2>\n<p>{_inline(problem.action)}</p>\n" if problem.action else "")
        + '<p><a href="/problems">Every problem type</a></p>\n'
    )
    return _document(problem.title, body)


@cache
def rendered_pages() -> dict[str, bytes]:
    """Every problem type's page by slug, rendered once (a request for an unknown slug adds nothing)."""
    return {problem.slug: render_problem_page(problem) for problem in problem_types()}


@cache
def render_index() -> bytes:
    items = "".join(
        f'<li><a href="{TYPE_PREFIX}{p.slug}"><code>{p.slug}</code></a>: {html.escape(p.title)}</li>\n'
        for p in problem_types()
    )
    body = (
        "<h1>Problem types</h1>\n<p>Every error of this service is an <code>application/problem+json</code> "
        "document (RFC 9457) whose <code>type</code> is one of these.</p>\n"
        f"<ul>\n{items}</ul>\n"
    )
    return _document("Problem types", body)


@router.get("/problems")
async def read_problem_index() -> Response:
    """Every problem type, each linked to its page."""
    return Response(render_index(), media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/problems/{slug}")
async def read_problem_type(slug: str) -> Response:
    """What a problem type means: when it happens and what to do."""
    page = rendered_pages().get(slug)
    if page is None:
        raise HTTPException(status_code=404, detail=f"No problem type {slug[:64]!r}.")
    return Response(page, media_type="text/html; charset=utf-8", headers=HEADERS)
