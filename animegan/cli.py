"""The ``animegan`` command: one entry point for the offline tools, the service and the load test.

Owns only the dispatch. Each subcommand's module is imported when that subcommand runs, so
``animegan --help`` is instant and ``animegan api`` never loads torch or onnxruntime in the
API process. Importing this module pulls in nothing beyond the standard library.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class _Command:
    module: str
    function: str
    summary: str
    # animegan.stylize_cli parses the command name itself; the others get only what follows it.
    pass_name: bool = False


_COMMANDS = {
    "stylize": _Command("animegan.stylize_cli", "main", "stylize image files or folders offline", pass_name=True),
    "styles": _Command(
        "animegan.stylize_cli", "main", "list styles and whether their weights are here", pass_name=True
    ),
    "weights": _Command(
        "animegan.stylize_cli", "main", "download (fetch NAME) or verify weights files", pass_name=True
    ),
    "bench": _Command("animegan.bench", "main", "measure inference time and memory on this machine"),
    "serve": _Command("animegan.serve", "main_serve", "run the whole service here: Redis, worker and API"),
    "api": _Command("animegan.serve", "main_api", "run the HTTP API process"),
    "worker": _Command("animegan.serve", "main_worker", "run a Celery worker process"),
    "keys": _Command("animegan.keys_cli", "main", "make API keys for ANIMEGAN_API_KEYS_FILE (new NAME)"),
    "loadtest": _Command("loadtest.runner", "main", "drive a running service with a load test"),
    "submit": _Command("animegan.submit_cli", "main", "stylize files on a running service and save the results"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``animegan COMMAND [ARGS...]``; returns the process exit code."""
    parser = _build_parser()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list:
        parser.print_help(sys.stderr)
        return 2
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    command = _COMMANDS[args.command]
    if args.command == "bench" and not _has_torch():
        bench_args = _bench_without_torch(list(args.args))
        if bench_args is None:
            return 2
        args.args = bench_args
    entry = _load(command)
    if entry is None:
        sys.stderr.write(f"error: `animegan {args.command}` is not available in this installation\n")
        return 1
    forwarded = [args.command, *args.args] if command.pass_name else list(args.args)
    result = entry(forwarded)
    return result if isinstance(result, int) else 0


TORCH_EXTRA_HINT = (
    "install the torch extra with PyTorch's CPU-only wheels: "
    "pip install 'animegan[torch]' --extra-index-url https://download.pytorch.org/whl/cpu"
)


def _has_torch() -> bool:
    # find_spec only: importing torch here would cost seconds and ~200 MB for nothing.
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _bench_without_torch(args: list[str]) -> list[str] | None:
    """Without torch the eager variant cannot run: leave it out of the default, refuse it when asked for."""
    if "--worker" in args or any(a == "--help" or a == "-h" for a in args):
        return args
    given = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--variants"]
    given += [a.split("=", 1)[1] for a in args if a.startswith("--variants=")]
    if not given:
        sys.stderr.write(
            f"animegan bench: torch is not installed, so the eager variant is left out ({TORCH_EXTRA_HINT})\n"
        )
        return args  # bench's default variants are those whose runtime is installed
    if any("eager" in (v.strip() for v in value.split(",")) for value in given):
        sys.stderr.write(f"animegan bench: the eager variant needs torch, which is not installed; {TORCH_EXTRA_HINT}\n")
        return None
    return args


def _load(command: _Command) -> Callable[[list[str]], object] | None:
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        # Only the command's own module being absent means "not installed"; anything else is a bug.
        if exc.name != command.module:
            raise
        return None
    entry: Callable[[list[str]], object] = getattr(module, command.function)
    return entry


def _build_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in _COMMANDS)
    listing = "\n".join(f"  {name:<{width}}  {command.summary}" for name, command in _COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="animegan",
        description="Photos to anime-style images with AnimeGANv2, on CPUs.",
        epilog=f"commands:\n{listing}\n\n`animegan COMMAND --help` describes each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("command", choices=list(_COMMANDS), metavar="COMMAND", help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _version() -> str:
    try:
        return metadata.version("animegan")
    except metadata.PackageNotFoundError:
        return "unknown"
