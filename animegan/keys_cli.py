"""``animegan keys``: make API keys for ANIMEGAN_API_KEYS_FILE.

``animegan keys new NAME`` prints a fresh random key (give it to the client; it is shown once and
stored nowhere) and the ``NAME SHA256HEX`` line to append to the keys file, which holds only the
key's digest: on stdout exactly those two lines, their labels on stderr. ``animegan keys digest``
reads a key on stdin and prints its digest (to rebuild a line for a key you already hold). The
gateway picks up an edited file within a second.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from api.tenancy.keys import NAME_PATTERN, key_digest, new_key


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animegan keys", description="Make API keys for ANIMEGAN_API_KEYS_FILE.")
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = commands.add_parser("new", help="print a new key and the line to add to the keys file")
    new.add_argument("name", metavar="NAME", help="the client's name (1-64 of A-Z a-z 0-9 . _ -); a metric label")
    commands.add_parser("digest", help="read a key on stdin, print its SHA-256 as the keys file holds it")
    return parser


def main(argv: list[str]) -> int:
    """Run ``animegan keys ACTION``; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.action == "digest":
        key = sys.stdin.readline().strip()
        if not key:
            sys.stderr.write("animegan keys digest: no key on stdin\n")
            return 2
        sys.stdout.write(f"{key_digest(key)}\n")
        return 0
    if not NAME_PATTERN.match(args.name):
        sys.stderr.write(f"animegan keys new: the name {args.name[:70]!r} is not 1-64 of A-Z a-z 0-9 . _ -\n")
        return 2
    key = new_key()
    # stdout carries exactly the key, then the line (scripts read both); the labels go to stderr.
    _say(f"API key for {args.name} (shown once and stored nowhere: give it to the client):", sys.stderr)
    _say(key, sys.stdout)
    _say("Line to append to ANIMEGAN_API_KEYS_FILE (the key's SHA-256, never the key):", sys.stderr)
    _say(f"{args.name} {key_digest(key)}", sys.stdout)
    return 0


def _say(text: str, stream: TextIO) -> None:
    stream.write(f"{text}\n")
    stream.flush()
