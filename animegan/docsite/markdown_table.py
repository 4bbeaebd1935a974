"""A Markdown table (the pipe tables Python-Markdown's ``tables`` extension reads)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


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
