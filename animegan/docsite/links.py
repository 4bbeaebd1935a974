"""Dead links, offline: relative links and anchors of Markdown files (README.md) and of the built site.

Markdown is read as GitHub renders it (headings get GitHub's anchors, duplicates ``-1``, ``-2`` ...;
code blocks and code spans hold no links). The site is checked on its built HTML, so generated
pages and the theme's own links are covered too. External ``http(s)`` links are only collected and
checked for their syntax: nothing here touches the network.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_BARE_URL = re.compile(r"(?<![(<\"'])\bhttps?://[^\s)<>`\"']+")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_EXTERNAL = ("http://", "https://")
_IGNORED = ("mailto:", "javascript:", "data:", "tel:")
_HOST_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", re.IGNORECASE)


@dataclass(frozen=True)
class DeadLink:
    source: str
    target: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.target} ({self.reason})"


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with their code spans blanked out."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)))
    return lines


def markdown_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline, image and reference link outside code."""
    found = []
    for number, line in _prose_lines(text):
        found += [(number, match.group(1)) for match in _LINK.finditer(line)]
        reference = _REFERENCE.match(line)
        if reference:
            found.append((number, reference.group(1)))
    return found


def external_urls(text: str) -> list[str]:
    """Every http(s) URL of a Markdown text outside code: links and bare URLs (GitHub links both)."""
    urls = [target for _, target in markdown_links(text) if target.startswith(_EXTERNAL)]
    for _, line in _prose_lines(text):
        urls += [url.rstrip(".,;:") for url in _BARE_URL.findall(_LINK.sub("", line))]
    return list(dict.fromkeys(urls))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def markdown_anchors(text: str) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        heading = None if fenced else _HEADING.match(line)
        if heading:
            slug = github_slug(heading.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    anchors |= set(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", text))
    return anchors


def check_markdown(path: Path) -> list[DeadLink]:
    """Dead relative links and anchors of one Markdown file (targets relative to its folder)."""
    text = path.read_text()
    dead = []
    for number, target in markdown_links(text):
        if target.startswith(_EXTERNAL + _IGNORED):
            continue
        where = f"{path.name}:{number}"
        file_part, _, fragment = target.partition("#")
        destination = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not destination.exists():
            dead.append(DeadLink(where, target, "no such file"))
        elif (
            fragment
            and destination.suffix == ".md"
            and unquote(fragment) not in markdown_anchors(destination.read_text())
        ):
            dead.append(DeadLink(where, target, f"no heading or anchor #{fragment} in {destination.name}"))
    return dead


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("id", "name") if tag == "a" else ("id",):
            if values.get(name):
                self.ids.add(str(values[name]))
        for name in ("href", "src"):
            target = values.get(name)
            if target:
                self.targets.append(target)


def _read_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def check_site(site: Path) -> tuple[list[DeadLink], list[str]]:
    """Dead relative links and anchors of a built site, and every external URL its pages link to."""
    pages = {path: _read_page(path) for path in site.rglob("*.html")}
    dead: list[DeadLink] = []
    external: list[str] = []
    for path, page in pages.items():
        where = str(path.relative_to(site))
        for target in page.targets:
            if target.startswith(_EXTERNAL):
                external.append(target)
                continue
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or target.startswith(_IGNORED):
                continue
            # A path from the root ("/assets/...", the 404 page's) is relative to the site's root.
            base = site if parts.path.startswith("/") else path.parent
            destination = (base / unquote(parts.path.lstrip("/"))).resolve() if parts.path else path
            if destination.is_dir():
                destination = destination / "index.html"
            if not destination.exists():
                dead.append(DeadLink(where, target, "no such file"))
            elif parts.fragment and destination.suffix == ".html":
                ids = pages[destination].ids if destination in pages else _read_page(destination).ids
                if unquote(parts.fragment) not in ids:
                    dead.append(DeadLink(where, target, f"no element with id {parts.fragment!r}"))
    return dead, list(dict.fromkeys(external))


def url_syntax_error(url: str) -> str | None:
    """Why ``url`` is not a well-formed absolute http(s) URL, or None."""
    if any(character.isspace() for character in url):
        return "white space in the URL"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "not http or https"
    try:
        parts.port  # noqa: B018 (raises on a port that is no number or out of range)
    except ValueError as exc:
        return str(exc)
    host = parts.hostname or ""
    if not (_HOST_NAME.fullmatch(host) or _is_address(host)):
        return f"no valid host ({host!r})"
    return None


def _is_address(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def main() -> int:
    """``python -m animegan.docsite.links [SITE_DIR]``: dead links of README.md (and of a built site),
    then every external URL, each with its syntax error if it has one. Exit 1 on any problem."""
    site = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    readme = ROOT / "README.md"
    dead = check_markdown(readme)
    urls = external_urls(readme.read_text())
    if site is not None:
        site_dead, site_urls = check_site(site.resolve())
        dead += site_dead
        urls += site_urls
    lines = [f"dead: {link}" for link in dead]
    bad = 0
    for url in dict.fromkeys(urls):
        error = url_syntax_error(url)
        bad += error is not None
        lines.append(f"external: {url}" + (f" ({error})" if error else ""))
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if dead or bad else 0


if __name__ == "__main__":
    sys.exit(main())
