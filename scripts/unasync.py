"""The blocking client is generated: `python scripts/unasync.py` writes it from the async one.

animegan/client/async_client.py is the one source of the client's I/O; this script rewrites it into
animegan/client/sync_client.py (as httpcore does with its unasync script): `async def` -> `def`,
`await x` -> `x`, `async with`/`async for` -> `with`/`for`, `AsyncX` -> `X`, `aclose` -> `close`,
`aiter_lines` -> `iter_lines`, `anyio.sleep` -> `time.sleep`, and the module docstring's words
on the async flavour. The output goes through `ruff format` (the project's
configuration) and is committed; `--check` exits 1 when the committed file is not what this script
writes (tests/unit/test_client_surface.py runs the same comparison).

Edit async_client.py (and this script's table, for a new async construct), never sync_client.py.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASYNC_SOURCE = ROOT / "animegan" / "client" / "async_client.py"
SYNC_TARGET = ROOT / "animegan" / "client" / "sync_client.py"

HEADER = "# Generated from async_client.py by scripts/unasync.py: edit that file, then run the script.\n"

# (pattern, replacement), applied in order to the whole source.
SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    # The module docstring's word on the flavour (docstrings of the class and methods read right
    # through the rules below).
    (r"from async code \(httpx; asyncio or trio, through anyio\)", "from blocking code (httpx)"),
    (r"^import anyio\n", ""),
    (r"\banyio\.sleep\(", "time.sleep("),
    (r"\basync (def|with|for)\b", r"\1"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    (r"\baiter_lines\b", "iter_lines"),
    (r"\bAsync(?=[A-Z])", ""),
)

# Whatever is left of these after the substitutions is an async construct the table does not know.
LEFTOVERS = re.compile(r"\b(async|await|anyio|aclose|aiter_\w+|__a\w+__)\b|\bAsync[A-Z]")


class UnasyncError(Exception):
    """The async source holds a construct the substitution table does not rewrite."""


def unasync(source: str) -> str:
    """The blocking source from the async one, before formatting."""
    for pattern, replacement in SUBSTITUTIONS:
        source = re.sub(pattern, replacement, source, flags=re.MULTILINE)
    leftover = LEFTOVERS.search(source)
    if leftover is not None:
        line = source.count("\n", 0, leftover.start()) + 1
        raise UnasyncError(f"line {line} of the output still says {leftover.group(0)!r}: extend SUBSTITUTIONS")
    return HEADER + source


def ruff_format(source: str, filename: Path) -> str:
    """``source`` as `ruff format` writes ``filename`` (the project's configuration applies)."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(filename), "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise UnasyncError(f"ruff format failed: {result.stderr.strip()}")
    return result.stdout


def generate(async_source: Path = ASYNC_SOURCE, target: Path = SYNC_TARGET) -> str:
    """The text ``target`` must hold: ``async_source`` rewritten and formatted."""
    return ruff_format(unasync(async_source.read_text()), target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs; write nothing")
    args = parser.parse_args(argv)
    expected = generate()
    current = SYNC_TARGET.read_text() if SYNC_TARGET.exists() else ""
    if args.check:
        if current != expected:
            sys.stderr.write(f"{SYNC_TARGET} is stale: run python scripts/unasync.py\n")
            return 1
        return 0
    if current != expected:
        SYNC_TARGET.write_text(expected)
        sys.stdout.write(f"wrote {SYNC_TARGET}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
