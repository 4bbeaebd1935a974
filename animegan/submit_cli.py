"""``animegan submit``: send photos to a running service and save the results, through ``animegan.client``.

Files are submitted ``--concurrency`` at a time (the service queues them; its Retry-After answers
pace the rest), each followed to its end, and every result written to
``OUT/<input stem>-<style>.<ext>``. A file that fails is reported and the others go on.

Exit codes: 0 every file was stylized, 1 at least one failed, 2 the command line is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from tqdm import tqdm

from animegan.client import AsyncClient, ClientError, Job, JobFailedError

INPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "avif": ".avif"}
API_KEY_ENV = "ANIMEGAN_API_KEY"
# Far above any upload limit a service would set; a bigger file is refused without reading it.
MAX_INPUT_BYTES = 256 * 1024 * 1024
USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``animegan submit`` with ``argv`` (what follows the command name); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    if args.crop is not None and not args.portrait:
        return _usage(parser, "--crop needs --portrait")
    if args.out.exists() and not args.out.is_dir():
        return _usage(parser, f"--out {args.out} exists and is not a folder")
    if not args.url.startswith(("http://", "https://")):
        return _usage(parser, f"--url must start with http:// or https://, got {args.url!r}")
    inputs, failures = collect_inputs(args.inputs)
    if not inputs:
        _report("error: no input images found")
        return 1
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _report(f"error: cannot create {args.out}: {exc.strerror or exc}")
        return 1
    started = time.monotonic()
    tally = anyio.run(submit_all, inputs, args)
    failed = failures + tally.failed
    seconds = time.monotonic() - started
    _report(f"{tally.written} written to {args.out}, {failed} failed, in {seconds:.1f} s")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="animegan submit",
        description="Stylize JPEG, PNG and WebP files (folders: their files with those extensions, sorted) "
        "on a running animegan service, writing OUT/<input stem>-<style>.<ext>.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="FILE_OR_DIR", help="image file or folder")
    parser.add_argument("--url", required=True, help="the service's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),  # the CLI's one setting from the environment
        help=f"sent as 'Authorization: Bearer KEY' (default: {API_KEY_ENV})",
    )
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="output folder (default: .)")
    parser.add_argument("--style", help="a style from GET /styles (default: the service's)")
    parser.add_argument("--format", choices=list(EXTENSIONS), help="output format (default: the service's)")
    parser.add_argument(
        "--portrait", action="store_true", help="portrait mode: stylize the centre square (or --crop) at 512x512"
    )
    parser.add_argument("--crop", metavar="X,Y,W,H", help="with --portrait: the square to take, in the photo's pixels")
    parser.add_argument(
        "--concurrency", type=_positive_int, default=4, metavar="N", help="files in flight at once (default 4)"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=600.0,
        metavar="S",
        help="give up on a job after S seconds (default 600)",
    )
    return parser


@dataclass
class Tally:
    written: int = 0
    failed: int = 0
    # Result paths already claimed, so two inputs never write the same file.
    targets: set[Path] = field(default_factory=set)


async def submit_all(inputs: list[Path], args: argparse.Namespace) -> Tally:
    """Stylize every input, ``args.concurrency`` at a time; returns what was written and what failed."""
    tally = Tally()
    limiter = anyio.CapacityLimiter(args.concurrency)
    async with AsyncClient(args.url, api_key=args.api_key) as client:
        with tqdm(total=len(inputs), unit="image", file=sys.stderr, disable=None) as bar:

            async def one(path: Path) -> None:
                async with limiter:
                    message = await _stylize_one(client, path, args, tally)
                bar.write(message, file=sys.stderr)
                bar.update(1)

            async with anyio.create_task_group() as group:
                for path in inputs:
                    group.start_soon(one, path)
    return tally


async def _stylize_one(client: AsyncClient, path: Path, args: argparse.Namespace, tally: Tally) -> str:
    """One file, start to end; returns the line that reports it."""
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise ValueError(f"larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB")
        mode = "portrait" if args.portrait else None
        job = await client.submit(path, args.style, args.format, mode, crop=args.crop)
        job = await client.wait(job, timeout=args.timeout)
        if not job.succeeded:
            raise JobFailedError(job)
        data = await client.result(job)
        target = _claim_target(args.out, path, job, tally)
        target.write_bytes(data)
    except (ClientError, OSError, ValueError) as exc:
        tally.failed += 1
        return f"error: {path}: {_describe(exc)}"
    tally.written += 1
    return f"{path} -> {target}"


def _claim_target(out: Path, path: Path, job: Job, tally: Tally) -> Path:
    extension = EXTENSIONS.get(job.output.format or "", f".{job.output.format}")
    target = out / f"{path.stem}-{job.style}{extension}"
    if target in tally.targets:
        raise ValueError(f"skipped, {target} was already written from another input")
    if target.resolve() == path.resolve():
        raise ValueError(f"skipped, the result would overwrite the input {path}")
    tally.targets.add(target)
    return target


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc)


def collect_inputs(raw_inputs: Sequence[Path]) -> tuple[list[Path], int]:
    """Expand folders (allowed extensions, sorted, not recursive); missing paths count as failures."""
    inputs: list[Path] = []
    failures = 0
    for raw in raw_inputs:
        if raw.is_dir():
            found = sorted(p for p in raw.iterdir() if p.suffix.lower() in INPUT_SUFFIXES and p.is_file())
            if not found:
                _report(f"warning: {raw}: no {'/'.join(INPUT_SUFFIXES)} files in this folder")
            inputs.extend(found)
        elif raw.is_file():
            inputs.append(raw)
        else:
            _report(f"error: {raw}: no such file or folder")
            failures += 1
    return inputs, failures


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _usage(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    _report(f"{parser.prog}: error: {message}")
    return USAGE_ERROR


def _report(line: str) -> None:
    sys.stderr.write(line + "\n")
