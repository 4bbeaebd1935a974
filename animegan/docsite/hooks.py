"""The mkdocs hook (``hooks:`` in mkdocs.yml): fills each page's generated parts from the code.

Runs on every build, ``make docs`` (which also rebuilds when the code changes: ``watch:``) and
``mkdocs build --strict`` in ``make lint``, so the reference is always the code's. A generator that
fails (an undocumented setting, a key missing from the layout) fails the build.
"""

from __future__ import annotations

from typing import Any

from animegan.docsite.reference import fill


def on_page_markdown(markdown: str, **_: Any) -> str:
    return fill(markdown)
