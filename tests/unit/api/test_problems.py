"""Every problem slug of api/problems.py answers with its status, problem+json and its type."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from api.log import RequestIdMiddleware
from api.problems import PROBLEM_MEDIA_TYPE, PROBLEMS, ApiError, install_problem_handlers, problem_document

pytestmark = pytest.mark.anyio


class _Down(Exception):
    pass


class _Body(BaseModel):
    size: int


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app, unavailable=(_Down,))

    @app.get("/raise/{slug}")
    async def raise_slug(slug: str) -> None:
        raise ApiError(slug, f"detail of {slug}", headers={"Retry-After": "7"}, extra={"hint": 1})

    @app.get("/down")
    async def down() -> None:
        raise _Down("connection refused to redis://secret@host")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @app.post("/validate")
    async def validate(body: _Body) -> int:
        return body.size

    app.add_middleware(RequestIdMiddleware)
    return app


async def _get(method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("slug", sorted(PROBLEMS))
async def test_api_error_becomes_a_problem_document(slug: str) -> None:
    response = await _get("GET", f"/raise/{slug}", headers={"X-Request-ID": "req-1"})
    status, title = PROBLEMS[slug]
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["retry-after"] == "7"
    body = response.json()
    assert body == {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": f"detail of {slug}",
        "instance": f"/raise/{slug}",
        "request_id": "req-1",
        "hint": 1,
    }


@pytest.mark.parametrize("slug", sorted(PROBLEMS))
async def test_a_problem_inside_another_body_has_the_members_of_the_answer(slug: str) -> None:
    """A refused file of a batch and the ``expired`` event carry what the answer would, minus the
    request's id and the extras (the problem of the whole request)."""
    error = ApiError(slug, f"detail of {slug}", headers={"Retry-After": "7"}, extra={"hint": 1})
    answer = (await _get("GET", f"/raise/{slug}", headers={"X-Request-ID": "req-1"})).json()
    assert problem_document(error, instance=f"/raise/{slug}") == {
        k: v for k, v in answer.items() if k not in {"request_id", "hint"}
    }
    assert problem_document(error) == {k: v for k, v in answer.items() if k in {"type", "title", "status", "detail"}}
    assert list(problem_document(error, instance="/x")) == ["type", "title", "status", "detail", "instance"]


async def test_validation_error_lists_the_fields() -> None:
    response = await _get("POST", "/validate", json={"size": "big"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert body["type"] == "/problems/validation-error"
    assert body["errors"][0]["loc"] == ["body", "size"]


async def test_unknown_route_is_about_blank_404() -> None:
    response = await _get("GET", "/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json()["type"] == "about:blank"
    assert response.json()["title"] == "Not Found"


async def test_wrong_method_is_about_blank_405() -> None:
    response = await _get("DELETE", "/down")
    assert response.status_code == 405
    assert response.json()["type"] == "about:blank"


async def test_dependency_outage_is_503_without_the_exception_text() -> None:
    response = await _get("GET", "/down")
    assert response.status_code == 503
    body = response.json()
    assert body["type"] == "/problems/broker-unavailable"
    assert "secret" not in response.text
    assert response.headers["retry-after"]


async def test_unhandled_error_is_a_generic_500() -> None:
    response = await _get("GET", "/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json()["type"] == "/problems/internal-error"
    assert "secret" not in response.text


async def test_request_id_is_made_when_missing_or_insane() -> None:
    made = await _get("GET", "/raise/job-not-found")
    assert len(made.headers["x-request-id"]) == 32
    assert made.json()["request_id"] == made.headers["x-request-id"]
    insane = await _get("GET", "/raise/job-not-found", headers={"X-Request-ID": "bad id\twith tab"})
    assert insane.headers["x-request-id"] != "bad id\twith tab"
