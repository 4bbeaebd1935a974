"""A Markdown table (the pipe tables Python-Markdown's ``tables`` extension reads)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_CODE_SPAN = re.compile(r"(`+).+?\1")


def cell(text: object) -> str:
    """One cell: pipes escaped, lines joined (a table row is one line)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def code(text: object) -> str:
    """``text`` as a code span (cells of names, defaults, values)."""
    value = str(text)
    fence = "``" if "`" in value else "`"
    return f"{fence}{value}{fence}" if value else ""


def prose(text: str) -> str:
    """Text from the code (a docstring, a help string, a comment) made safe for Markdown: outside code
    spans ``<`` and ``>`` are escaped, so ``<pid>`` or ``<style>.pt`` is shown, never taken for HTML."""
    parts, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        parts += [_escape(text[last : match.start()]), match.group(0)]
        last = match.end()
    return "".join([*parts, _escape(text[last:])])


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")
