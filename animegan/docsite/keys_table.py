"""The Redis keys, from ``jobstore/keys.py``: its key-layout table, checked against its key builders.

The module's docstring holds the layout as a reStructuredText simple table (key, value, TTL, written
by); it is rendered as is. Every key the module can build (each ``*_KEY`` constant, each ``*_key`` /
``*_channel`` function called with sample ids) must match a row of that table, or the build stops:
a new key cannot reach the code without its line in the layout.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from animegan.docsite.markdown_table import code, prose, table
from jobstore import keys

_BORDER = re.compile(r"^=+(?:\s+=+)+\s*$")
_TOKEN = re.compile(r"\S+")


class UndocumentedKey(Exception):
    """A key ``jobstore.keys`` builds that its layout table does not list."""


def _columns(border: str) -> list[int]:
    return [match.start() for match in re.finditer(r"=+", border)]


def layout_rows(docstring: str | None = keys.__doc__) -> list[list[str]]:
    """The rows of the docstring's simple table; a line whose first column is empty continues the row above.

    Each word goes to the column its first character lies in, so text running past its column's
    border (the table is laid out by hand) stays in its column.
    """
    lines = (docstring or "").splitlines()
    borders = [i for i, line in enumerate(lines) if _BORDER.match(line)]
    if len(borders) < 3:
        raise UndocumentedKey("jobstore/keys.py: no key-layout table (a simple reST table) in the docstring")
    starts = _columns(lines[borders[0]])
    rows: list[list[str]] = []
    for line in lines[borders[1] + 1 : borders[2]]:
        if not line.strip():
            continue
        cells = [""] * len(starts)
        for token in _TOKEN.finditer(line):
            column = max(i for i, start in enumerate(starts) if start <= token.start())
            cells[column] = f"{cells[column]} {token.group()}".strip()
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
    return rows


def _pattern(key_cell: str) -> re.Pattern[str]:
    """``job:{id}`` (as a code literal) -> a regex of the whole key name, each ``{part}`` one segment."""
    literal = key_cell.split("``")[1]
    parts = re.split(r"\{[^}]+\}", literal)
    return re.compile(re.escape(keys.PREFIX) + "[^:]+".join(re.escape(part) for part in parts) + "$")


def built_keys() -> dict[str, str]:
    """Every key name the module builds: constant or function name -> a sample key."""
    found = {name: value for name, value in vars(keys).items() if name.endswith("_KEY") and isinstance(value, str)}
    for name, function in vars(keys).items():
        if name.endswith(("_key", "_channel")) and inspect.isfunction(function):
            builder: Callable[..., str] = function
            params = inspect.signature(builder).parameters
            found[name] = builder(*(f"sample{i}" for i in range(len(params))))
    return found


def check_layout(docstring: str | None = keys.__doc__) -> list[list[str]]:
    """The layout's rows, once every key the module builds matched one of them."""
    rows = layout_rows(docstring)
    patterns = [_pattern(row[0]) for row in rows]
    missing = [name for name, key in built_keys().items() if not any(p.match(key) for p in patterns)]
    if missing:
        raise UndocumentedKey(f"jobstore/keys.py builds keys its layout table does not list: {', '.join(missing)}")
    return rows


def render() -> str:
    rows = []
    for key, *rest in check_layout():
        _, literal, after = key.split("``", 2)  # ``job:{id}`` (channel) -> the full name, then the rest
        rows.append((code(keys.PREFIX + literal) + prose(after), *(prose(cell) for cell in rest)))
    header = [f"key (prefix {code(keys.PREFIX)})", "value", "TTL", "written by"]
    tail = (
        f"\nThe Celery queue is the Redis list {code(keys.QUEUE_NAME)} on the broker (with Celery's priority "
        f"lists); its one task is {code(keys.TASK_NAME)}, whose message carries only the job id.\n"
    )
    return table(header, rows) + tail
