"""API keys: the keys file (ANIMEGAN_API_KEYS_FILE), making a key, and checking one in constant time.

The file holds one ``NAME SHA256HEX`` line per client: the hex SHA-256 of the key, never the key
itself, so a leaked file grants nothing. ``#`` starts a comment; blank lines are ignored. A name is
1-64 of ``A-Z a-z 0-9 . _ -`` (it becomes a metric label and part of a Redis key name).

``KeyRing`` re-reads the file when its size, mtime, ctime or inode changes (checked at most once
a second, on use; ctime because a rewrite within one mtime tick, or one that restores the mtime,
leaves the other three equal), so keys are added and revoked without a restart; a reload that finds the file
malformed or missing keeps the last good set and logs a warning. Standard library only: the
``animegan keys`` command imports this module.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

KEY_PREFIX = "agk_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DIGEST_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")
RELOAD_CHECK_S = 1.0


class KeysFileError(ValueError):
    """The keys file cannot be read or has a malformed line (the message names the line)."""


@dataclass(frozen=True)
class KeyEntry:
    name: str
    digest: bytes  # SHA-256 of the key


def new_key() -> str:
    """A fresh random key: 32 random bytes, URL-safe base64, behind a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """The hex SHA-256 of a key, as the keys file holds it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_keys(text: str, source: str) -> tuple[KeyEntry, ...]:
    """Every ``NAME SHA256HEX`` line of ``text``; ``source`` names the file in error messages."""
    entries: list[KeyEntry] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"{source} line {number}"
        if len(fields) != 2:
            raise KeysFileError(f"{where}: expected `NAME SHA256HEX`, got {len(fields)} field(s)")
        name, digest = fields
        if not NAME_PATTERN.match(name):
            raise KeysFileError(f"{where}: the name {name[:70]!r} is not 1-64 of A-Z a-z 0-9 . _ -")
        if not _DIGEST_PATTERN.match(digest):
            raise KeysFileError(f"{where}: the digest is not 64 hex digits (the SHA-256 of the key, not the key)")
        if name in names:
            raise KeysFileError(f"{where}: the name {name!r} appears twice")
        value = bytes.fromhex(digest)
        if value in digests:
            raise KeysFileError(f"{where}: the same key digest appears twice")
        names.add(name)
        digests.add(value)
        entries.append(KeyEntry(name, value))
    return tuple(entries)


def read_keys_file(path: Path) -> tuple[KeyEntry, ...]:
    """Parse the keys file at ``path``; a missing, unreadable or malformed file raises ``KeysFileError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_keys(text, str(path))


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino)


class KeyRing:
    """The keys of one keys file, re-read when the file changes."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._signature = _signature(path)
        self._entries = read_keys_file(path)
        self._checked = clock()
        if not self._entries:
            logger.warning("the keys file %s holds no key: every protected request gets 401", path)

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self._entries]

    def match(self, key: str) -> str | None:
        """The name of the client holding ``key``, or None; every entry is compared, in constant time."""
        self._reload_if_changed()
        presented = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found: str | None = None
        for entry in self._entries:
            # No early exit: the time taken does not say which entry matched, or how far it got.
            if hmac.compare_digest(presented, entry.digest):
                found = entry.name
        return found

    def _reload_if_changed(self) -> None:
        now = self._clock()
        if now - self._checked < RELOAD_CHECK_S:
            return
        self._checked = now
        signature = _signature(self.path)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            entries = read_keys_file(self.path)
        except KeysFileError as exc:
            logger.warning("keys file not reloaded, the previous %d key(s) stay in force: %s", len(self._entries), exc)
            return
        logger.info("keys file reloaded: %d key(s)", len(entries), extra={"keys": len(entries)})
        self._entries = entries
