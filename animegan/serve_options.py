"""What ``animegan serve`` checks before it starts anything, and its first-run options.

- ``--style NAME`` (repeatable, or a comma list) sets ANIMEGAN_STYLES for both processes; the
  first style becomes ANIMEGAN_DEFAULT_STYLE. ``--weights-dir DIR`` sets ANIMEGAN_WEIGHTS_DIR.
  Flags win over the environment.
- ``--fetch-missing`` downloads (and verifies) the weights of public styles that are not on this
  machine yet; ``make serve`` passes it.
- Every refusal is one line naming what to set: the flag and the environment variable.
- The API's port is tried before Redis or a worker starts, so "address already in use" is the
  last line, not a line lost among the other processes' logs.
- ``ServeSettings``: what only the launcher reads (ANIMEGAN_REDIS_MAXMEMORY, the bound of the
  private Redis it starts), checked with the other processes' settings.

Imports the settings and the weights registry only: no web framework, no runtime, no torch.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import socket
from collections.abc import MutableMapping, Sequence
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

STYLES_ENV = "ANIMEGAN_STYLES"
DEFAULT_STYLE_ENV = "ANIMEGAN_DEFAULT_STYLE"
WEIGHTS_DIR_ENV = "ANIMEGAN_WEIGHTS_DIR"
PROG = "animegan serve"


class ServeRefused(Exception):
    """A reason ``serve`` cannot start, as the one line it prints."""


class ServeSettings(BaseSettings):
    """Settings of the launcher itself (not of the gateway or the workers it starts)."""

    # A docstring under a field is its description (the docs site's settings reference).
    model_config = SettingsConfigDict(env_prefix="ANIMEGAN_", extra="ignore", use_attribute_docstrings=True)

    redis_maxmemory: int = 512 * 1024 * 1024
    """`maxmemory` of the private Redis that `serve` starts (policy `noeviction`), in bytes or Redis's
    units (`512mb`, `2gb`); `0`: unbounded (not advised). Ignored when `ANIMEGAN_REDIS_URL` is set: a
    Redis of your own keeps its own `maxmemory`."""

    @field_validator("redis_maxmemory", mode="before")
    @classmethod
    def _parse_size(cls, value: object) -> int:
        from api.config import parse_size

        return parse_size(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--style",
        action="append",
        metavar="NAME",
        help=f"style to serve; repeat it or give a comma list (hayao,paprika). The first is the default style. "
        f"Sets {STYLES_ENV} and {DEFAULT_STYLE_ENV} (default: those variables, else face_paint_512_v2)",
    )
    parser.add_argument(
        "--weights-dir",
        type=Path,
        metavar="DIR",
        help=f"folder with <style>.pt files, for offline use (sets {WEIGHTS_DIR_ENV})",
    )
    parser.add_argument(
        "--fetch-missing",
        action="store_true",
        help="download the weights of public styles not found here (verified against the pinned digest)",
    )


def split_styles(values: Sequence[str]) -> list[str]:
    """``["hayao,paprika", "hayao"]`` -> ``["hayao", "paprika"]``: commas split, blanks and repeats dropped."""
    styles: list[str] = []
    for value in values:
        for name in value.split(","):
            if name.strip() and name.strip() not in styles:
                styles.append(name.strip())
    return styles


def apply_flags(args: argparse.Namespace, environ: MutableMapping[str, str]) -> None:
    """Turn ``--style`` and ``--weights-dir`` into the ANIMEGAN_* variables both processes read."""
    from inference.weights import STYLES

    if args.style is not None:
        styles = split_styles(args.style)
        if not styles:
            raise ServeRefused(f"{PROG}: --style needs a style name, e.g. --style hayao")
        unknown = [name for name in styles if name not in STYLES]
        if unknown:
            raise ServeRefused(f"{PROG}: unknown style {unknown[0]!r} in --style; known styles: {', '.join(STYLES)}")
        environ[STYLES_ENV] = ",".join(styles)
        environ[DEFAULT_STYLE_ENV] = styles[0]
    if args.weights_dir is not None:
        directory = args.weights_dir.expanduser()
        if not directory.is_dir():
            raise ServeRefused(f"{PROG}: --weights-dir {args.weights_dir}: no such folder")
        environ[WEIGHTS_DIR_ENV] = str(directory.resolve())


def check_styles(environ: MutableMapping[str, str]) -> None:
    """The default style must be one of the styles served; say which variable or flag fixes it."""
    from worker.config import WorkerSettings

    styles = split_styles([environ.get(STYLES_ENV, "")])
    default = environ.get(DEFAULT_STYLE_ENV) or str(WorkerSettings.model_fields["default_style"].default)
    if not styles or default in styles:
        return
    origin = (
        DEFAULT_STYLE_ENV if environ.get(DEFAULT_STYLE_ENV) else f"the built-in default; {DEFAULT_STYLE_ENV} is unset"
    )
    raise ServeRefused(
        f"{PROG}: the default style {default!r} ({origin}) is not among the styles served, "
        f"{STYLES_ENV}={environ.get(STYLES_ENV)}. Pass --style {styles[0]} (the first --style is the default), "
        f"or set {DEFAULT_STYLE_ENV} to one of {', '.join(styles)}"
    )


def ensure_weights(styles: Sequence[str], *, weights_dir: Path | None, cache_dir: Path | None, fetch: bool) -> None:
    """Every style served has a weights file (downloaded first with ``fetch``), or say what to set."""
    from inference.errors import WeightsError
    from inference.weights import fetch_weights, get_style, resolve_weights

    for style in styles:
        try:
            resolve_weights(style, weights_dir=weights_dir, cache_dir=cache_dir)
            continue
        except WeightsError:
            if not (fetch and get_style(style).url):
                raise ServeRefused(_no_weights(style, weights_dir, cache_dir)) from None
        try:
            fetch_weights(style, cache_dir)
        except WeightsError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            reason = getattr(cause, "reason", cause)  # URLError: the socket error, not its wrapper
            advice = _advice(style, weights_dir, cache_dir, offer_fetch=False)
            raise ServeRefused(f"{PROG}: cannot download the {style} weights ({reason}). {advice}") from None


def _no_weights(style: str, weights_dir: Path | None, cache_dir: Path | None) -> str:
    from inference.weights import cached_weights_path, default_weights_dir

    directory = weights_dir if weights_dir is not None else default_weights_dir()
    looked = [*([directory / f"{style}.pt"] if directory is not None else []), cached_weights_path(style, cache_dir)]
    where = ", ".join(str(path) for path in looked)
    return f"{PROG}: no weights for style {style!r} (looked for {where}). {_advice(style, weights_dir, cache_dir)}"


def _advice(style: str, weights_dir: Path | None, cache_dir: Path | None, *, offer_fetch: bool = True) -> str:
    from inference.weights import available_styles, get_style

    fetch = f", download it with `animegan weights fetch {style}`" if offer_fetch and get_style(style).url else ""
    advice = (
        f"Put {style}.pt in a folder and pass --weights-dir DIR (or set {WEIGHTS_DIR_ENV}=DIR){fetch}, or serve "
        f"another style with --style NAME (or set {STYLES_ENV} and {DEFAULT_STYLE_ENV})"
    )
    found = [name for name, path in available_styles(weights_dir=weights_dir, cache_dir=cache_dir).items() if path]
    if found:
        advice += f". Weights found here for: {', '.join(found)} (e.g. --style {found[0]})"
    return advice


def check_port(host: str, port: int) -> None:
    """Bind the API's address once (as uvicorn will, SO_REUSEADDR) and release it; refuse if that fails."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeRefused(f"{PROG}: cannot listen on {host}:{port}: {exc.strerror}; change --host") from None
    family, kind, proto, _, address = infos[0]
    with contextlib.closing(socket.socket(family, kind, proto)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise ServeRefused(port_refusal(host, port, exc.errno)) from None


def port_in_use(host: str, port: int) -> bool:
    try:
        check_port(host, port)
    except ServeRefused:
        return True
    return False


def port_refusal(host: str, port: int, code: int | None) -> str:
    where = f"{PROG}: cannot listen on {host}:{port}"
    if code == errno.EADDRINUSE:
        return (
            f"{where}: the port is already in use (another animegan serve?). Stop that process or pick another "
            f'port with --port N (make serve ARGS="--port N")'
        )
    if code == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need root); pick another port with --port N"
    reason = os.strerror(code) if code else "unknown error"
    return f"{where}: {reason}; change --host or --port"
