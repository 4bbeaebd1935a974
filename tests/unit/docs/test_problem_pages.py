"""Problem ``type`` URIs resolve: the real gateway, on a real socket, serves GET /problems/{slug} for every
problem type, from the table the docs site uses; an unknown slug is a 404 problem document."""

from __future__ import annotations

import html
from collections.abc import Callable
from html.parser import HTMLParser

import httpx
import pytest

from animegan.docsite import problems_table
from api.ops.problem_guide import GUIDE, problem_types
from api.ops.problem_pages import CONTENT_SECURITY_POLICY, render_problem_page
from api.problems import PROBLEM_MEDIA_TYPE, PROBLEMS
from jobstore.records import ErrorCode

# Nothing answers there: the pages need no Redis, and a route that does answers 503 broker-unavailable.
NO_REDIS = "redis://127.0.0.1:9/0"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name == "href" and value]


def _tags(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


@pytest.fixture
def base(start_api: Callable[..., str]) -> str:
    return start_api(redis_url=NO_REDIS)


def test_the_guide_covers_exactly_the_problem_types_clients_meet() -> None:
    assert set(GUIDE) == set(PROBLEMS) | {code.value for code in ErrorCode}
    assert all(guide.when and guide.action for guide in GUIDE.values())


def test_every_problem_type_has_its_page(base: str) -> None:
    with httpx.Client(base_url=base) as client:
        for problem in problem_types():
            response = client.get(f"/problems/{problem.slug}")
            assert response.status_code == 200, problem.slug
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            page = response.text
            assert f"<h1>{html.escape(problem.title)}</h1>" in page
            assert f"<code>/problems/{problem.slug}</code>" in page
            # The guide's text, code spans shown as code: `Retry-After` -> <code>Retry-After</code>.
            for text in (problem.when, problem.action):
                first = html.escape(text.split("`")[0], quote=False)
                assert first in page, (problem.slug, first)
            if problem.status is not None:
                assert f"HTTP status {problem.status}" in page
            if problem.job_error:
                assert "<code>error.type</code> of a failed job" in page


def test_problem_pages_load_nothing_and_carry_the_security_headers(base: str) -> None:
    response = httpx.get(f"{base}/problems/queue-full")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    tags = _tags(response.text)
    assert not {"script", "style", "img", "link", "iframe"} & set(tags.tags)
    assert tags.links == ["/problems"]


def test_an_unknown_slug_is_a_404_problem_document(base: str) -> None:
    response = httpx.get(f"{base}/problems/no-such-problem")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert (body["type"], body["status"], body["instance"]) == ("about:blank", 404, "/problems/no-such-problem")


def test_the_index_links_every_problem_type(base: str) -> None:
    response = httpx.get(f"{base}/problems")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert _tags(response.text).links == [f"/problems/{problem.slug}" for problem in problem_types()]


def test_head_answers_like_get_without_a_body(base: str) -> None:
    got = httpx.get(f"{base}/problems/job-not-found")
    head = httpx.head(f"{base}/problems/job-not-found")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]


def test_the_type_of_a_real_refusal_resolves_to_its_page(base: str) -> None:
    with httpx.Client(base_url=base) as client:
        refused = client.post("/stylize", json={"image": "not multipart"})
        assert refused.status_code == 415
        down = client.get("/jobs/AAAAAAAAAAAAAAAAAAAAAA")
        assert down.status_code == 503
        for answer in (refused, down):
            problem = answer.json()
            page = client.get(problem["type"])
            assert page.status_code == 200
            assert f"<h1>{html.escape(problem['title'])}</h1>" in page.text


def test_the_api_docs_still_answer_beside_the_problem_pages(base: str) -> None:
    docs = httpx.get(f"{base}/docs")
    assert docs.status_code == 200
    assert "default-src 'self'" in docs.headers["content-security-policy"]
    assert "/problems/{slug}" not in httpx.get(f"{base}/openapi.json").json()["paths"]


def test_a_type_missing_from_the_guide_stops_the_docs_but_still_has_a_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(GUIDE, "queue-full")
    problem = next(p for p in problem_types() if p.slug == "queue-full")
    page = render_problem_page(problem).decode()
    assert "<h1>Queue full</h1>" in page
    assert "When it happens" not in page
    with pytest.raises(problems_table.UndocumentedProblem, match="queue-full"):
        problems_table.render()
