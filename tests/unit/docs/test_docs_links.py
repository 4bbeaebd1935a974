"""No dead link in README.md or the built site: relative links and anchors resolved offline; external
http(s) links listed and checked for their syntax only (no network in tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from animegan.docsite import links

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"


def test_readme_has_no_dead_relative_link_or_anchor() -> None:
    assert len(links.markdown_links(README.read_text())) > 20  # the README's own links were read
    dead = links.check_markdown(README)
    assert not dead, "\n".join(map(str, dead))


def test_the_built_site_has_no_dead_relative_link_or_anchor(built_site: Path) -> None:
    dead, _ = links.check_site(built_site)
    assert not dead, "\n".join(map(str, dead))


def test_external_links_of_the_readme_and_the_site_are_well_formed(built_site: Path) -> None:
    _, site_urls = links.check_site(built_site)
    urls = links.external_urls(README.read_text()) + site_urls
    assert "https://keda.sh" in urls  # linked from both
    bad = {url: links.url_syntax_error(url) for url in urls if links.url_syntax_error(url)}
    assert not bad, f"malformed external links: {bad}"


def test_markdown_check_finds_dead_files_and_anchors_and_ignores_code(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Same\n\n## Same\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title: `with code`\n\n"
        "[ok](other.md#same-1) [ok](#title-with-code) [gone](missing.md) [bad anchor](other.md#nowhere)\n"
        "[bad local](#no-such-heading) ![img](pic.png) `[in code](nowhere.md)`\n\n"
        "```\n[in a block](nowhere.md)\n```\n"
    )
    dead = {link.target for link in links.check_markdown(page)}
    assert dead == {"missing.md", "other.md#nowhere", "#no-such-heading", "pic.png"}


def test_github_anchors_follow_githubs_rules() -> None:
    text = "## Submit: `POST /stylize`\n## What is verified here, and what is not\n## Same\n## Same\n"
    assert links.markdown_anchors(text) == {
        "submit-post-stylize",
        "what-is-verified-here-and-what-is-not",
        "same",
        "same-1",
    }


def test_site_check_finds_dead_pages_and_fragments(tmp_path: Path) -> None:
    (tmp_path / "guides").mkdir()
    (tmp_path / "index.html").write_text('<h1 id="top">x</h1><a href="guides/a.html#here">a</a><a href="#top">t</a>')
    (tmp_path / "guides" / "a.html").write_text(
        '<p id="here"></p><a href="../index.html#gone">x</a><a href="b.html">y</a><img src="/index.html">'
        '<a href="https://example.org/x">e</a><a href="mailto:a@b.c">m</a>'
    )
    dead, external = links.check_site(tmp_path)
    assert {(link.source, link.target) for link in dead} == {
        ("guides/a.html", "../index.html#gone"),
        ("guides/a.html", "b.html"),
    }
    assert external == ["https://example.org/x"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://keda.sh", False),
        ("http://127.0.0.1:8000/docs", False),
        ("https://[2001:db8::1]/x", False),
        ("https://zensical.org/docs/compatibility/mkdocs/migration/", False),
        ("https://exa mple.org", True),
        ("https://", True),
        ("https://example..org", True),
        ("https://example.org:99999/", True),
        ("ftp://example.org", True),
    ],
)
def test_url_syntax(url: str, problem: bool) -> None:
    assert (links.url_syntax_error(url) is not None) is problem
