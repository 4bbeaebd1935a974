"""The generated parts of the site by name: ``<!-- generated: NAME -->`` in a page becomes ``render(NAME)``."""

from __future__ import annotations

import re
from collections.abc import Callable

from animegan.docsite import keys_table, metrics_table, problems_table, settings_table, variables

GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings_table.render,
    "compose-variables": variables.render,
    "problems": problems_table.render,
    "metrics": metrics_table.render,
    "redis-keys": keys_table.render,
}
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


class UnknownMarker(Exception):
    """A page asks for a generated part that does not exist."""


def render(name: str) -> str:
    generator = GENERATORS.get(name)
    if generator is None:
        raise UnknownMarker(f"no generated part {name!r} (known: {', '.join(GENERATORS)})")
    return generator()


def fill(markdown: str) -> str:
    """``markdown`` with every marker replaced by its generated part."""
    return MARKER.sub(lambda match: render(match.group(1)), markdown)
