"""The offline command line: stylize image files, list styles, fetch and verify weights.

Reached through the ``animegan`` command (``animegan/cli.py`` forwards ``stylize``, ``styles``
and ``weights`` here). Only ``stylize`` needs the model: it imports ``inference.pipeline``
when it runs, so ``styles`` and ``weights`` never load torch or onnxruntime.

Exit codes: 0 all done, 1 something failed (each failure is reported on stderr, the other
inputs are still processed), 2 the command line is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from animegan.style_options import add_precision_argument, add_style_arguments, chosen_align_corners, chosen_style
from animegan.stylize_video import add_video_arguments, is_clip, stylize_clips
from imaging.crops import PORTRAIT_SIDE, CropBox, parse_crop
from imaging.decode import DecodedImage, decode_image, decode_portrait
from imaging.encode import encode_image
from imaging.errors import CropError, ImageError, ImageTooLargeError
from imaging.formats import FILE_EXTENSIONS, OUTPUT_FORMATS
from inference.errors import InferenceError, PrecisionError, WeightsError
from inference.weights import (
    DEFAULT_STYLE,
    STYLES,
    WEIGHTS_LICENCE,
    available_styles,
    fetch_weights,
    git_blob_sha1,
    how_to_supply,
    resolve_weights,
    verify_weights,
)

if TYPE_CHECKING:
    from inference.pipeline import Stylizer

INPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")
# Reading a file is the one unbounded step of a batch; no accepted image comes near this.
MAX_INPUT_BYTES = 256 * 1024 * 1024
USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stylize``, ``styles`` or ``weights`` with ``argv`` (default ``sys.argv[1:]``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    code: int = args.handler(args)
    return code


def build_parser(prog: str = "animegan") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Offline AnimeGANv2 tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stylize = commands.add_parser(
        "stylize",
        help="stylize image files, clips or folders",
        description="Stylize JPEG, PNG, WebP and HEIC files (folders: their files with those extensions, sorted) "
        "one at a time, writing OUT/<input stem>.<format>; clips (MP4, MOV, WebM, MKV) become OUT/<stem>.mp4 "
        "with their timing and sound kept. A file that fails is reported and skipped.",
    )
    stylize.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image file or folder")
    stylize.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")
    add_style_arguments(stylize)
    stylize.add_argument(
        "--max-side",
        type=_positive_int,
        default=1024,
        metavar="N",
        help="downscale so the longest side is at most N (default 1024)",
    )
    stylize.add_argument(
        "--portrait",
        action="store_true",
        help=f"portrait mode: stylize the centre square (or --crop) at {PORTRAIT_SIDE}x{PORTRAIT_SIDE}, "
        "as the face styles were trained",
    )
    stylize.add_argument(
        "--crop",
        type=_crop_box,
        metavar="X,Y,W,H",
        help="with --portrait: the square to take (w = h), in each photo's pixels after EXIF orientation",
    )
    add_video_arguments(stylize, _positive_int)
    stylize.add_argument("--format", choices=OUTPUT_FORMATS, default="png", help="output format (default png)")
    stylize.add_argument(
        "--threads", type=_positive_int, default=_cpu_count(), metavar="N", help="CPU threads (default: all available)"
    )
    add_precision_argument(stylize)
    stylize.set_defaults(handler=_run_stylize)

    styles = commands.add_parser("styles", help="list styles and whether their weights are here")
    styles.set_defaults(handler=_run_styles)

    weights = commands.add_parser("weights", help="download or verify weights files")
    actions = weights.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download a style's weights into the cache and verify them")
    fetch.add_argument("name", choices=list(STYLES), metavar="NAME")
    fetch.add_argument(
        "--cache-dir", type=Path, metavar="DIR", help="cache root (default: ANIMEGAN_CACHE_DIR or the user cache dir)"
    )
    fetch.add_argument("--url", help="download from this mirror instead (still verified against the pinned digest)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(handler=_run_fetch)
    verify = actions.add_parser("verify", help="check a weights file against its style")
    verify.add_argument("name", choices=list(STYLES), metavar="NAME")
    verify.add_argument("file", nargs="?", type=Path, metavar="FILE", help="file to check (default: the one in use)")
    verify.set_defaults(handler=_run_verify)
    return parser


def _run_stylize(args: argparse.Namespace) -> int:
    out_dir: Path = args.out
    if args.crop is not None and not args.portrait:
        _error("--crop needs --portrait")
        return USAGE_ERROR
    if out_dir.exists() and not out_dir.is_dir():
        _error(f"--out {out_dir} exists and is not a folder")
        return USAGE_ERROR
    inputs, failures = _collect_inputs(args.inputs)
    if not inputs:
        _error("no input images found")
        return 1
    style = chosen_style(args)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stylizer = _load_stylizer(style, args)
    except (WeightsError, PrecisionError) as exc:
        _error(str(exc))
        return 1
    except OSError as exc:
        _error(f"cannot create {out_dir}: {exc.strerror or exc}")
        return 1
    framing = _Framing(max_side=args.max_side, portrait=args.portrait, crop=args.crop)
    clips = [path for path in inputs if is_clip(path)]
    photos = [path for path in inputs if not is_clip(path)]
    written = _stylize_all(stylizer, photos, out_dir, fmt=args.format, framing=framing)
    written += stylize_clips(stylizer, clips, out_dir, max_side=args.video_max_side)
    failures += len(inputs) - written
    sys.stderr.write(f"{written} written to {out_dir}, {failures} failed\n")
    return 1 if failures else 0


def _load_stylizer(style: str, args: argparse.Namespace) -> Stylizer:
    from inference.pipeline import Stylizer

    corners = chosen_align_corners(args, style)
    stylizer = Stylizer.load(
        style, weights_path=args.weights, threads=args.threads, align_corners=corners, precision=args.precision
    )
    sys.stderr.write(f"{style}: {stylizer.precision} on {stylizer.engine.runtime_name}, {args.threads} thread(s)\n")
    return stylizer


@dataclass(frozen=True)
class _Framing:
    """Which pixels of each input are stylized: all of it within max_side, or a portrait square."""

    max_side: int
    portrait: bool = False
    crop: CropBox | None = None

    def decode(self, data: bytes) -> DecodedImage:
        if self.portrait:
            return decode_portrait(data, crop=self.crop)
        return decode_image(data, max_side=self.max_side)


def _stylize_all(stylizer: Stylizer, inputs: list[Path], out_dir: Path, *, fmt: str, framing: _Framing) -> int:
    """Stylize each input in turn (one image in memory at a time); returns how many were written."""
    from tqdm import tqdm

    sources: dict[Path, Path] = {}
    with tqdm(inputs, unit="image", file=sys.stderr, disable=None) as bar:
        for path in bar:
            target = out_dir / (path.stem + FILE_EXTENSIONS[fmt])
            if target in sources:
                tqdm.write(
                    f"error: {path}: skipped, {target} was already written from {sources[target]}", file=sys.stderr
                )
                continue
            try:
                _stylize_file(stylizer, path, target, fmt=fmt, framing=framing)
            except (ImageError, InferenceError) as exc:
                tqdm.write(f"error: {path}: {exc}", file=sys.stderr)
                continue
            except OSError as exc:
                tqdm.write(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
                continue
            sources[target] = path
    return len(sources)


def _stylize_file(stylizer: Stylizer, path: Path, target: Path, *, fmt: str, framing: _Framing) -> None:
    if path.stat().st_size > MAX_INPUT_BYTES:
        raise ImageTooLargeError(f"The file is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB")
    decoded = framing.decode(path.read_bytes())
    result = stylizer.stylize(decoded.image)
    target.write_bytes(encode_image(result, fmt))


def _collect_inputs(raw_inputs: Sequence[Path]) -> tuple[list[Path], int]:
    """Expand folders (allowed extensions, sorted, not recursive); report missing paths as failures."""
    inputs: list[Path] = []
    failures = 0
    for raw in raw_inputs:
        if raw.is_dir():
            found = sorted(
                p for p in raw.iterdir() if (p.suffix.lower() in INPUT_SUFFIXES or is_clip(p)) and p.is_file()
            )
            if not found:
                _error(f"{raw}: no {'/'.join(INPUT_SUFFIXES)} files in this folder", prefix="warning")
            inputs.extend(found)
        elif raw.is_file():
            inputs.append(raw)
        else:
            _error(f"{raw}: no such file or folder")
            failures += 1
    return inputs, failures


def _is_input(path: Path) -> bool:
    return path.suffix.lower() in INPUT_SUFFIXES or is_clip(path)


def _run_styles(args: argparse.Namespace) -> int:
    found = available_styles()
    lines: list[str] = []
    for name, spec in STYLES.items():
        path = found[name]
        default = " (default)" if name == DEFAULT_STYLE else ""
        lines.append(f"{name}{default}")
        lines.append(f"  {spec.description}")
        lines.append(f"  align_corners: {str(spec.align_corners).lower()}")
        lines.append(f"  weights: {path}" if path else f"  weights: not found. {how_to_supply(spec)}")
    lines.append("")
    lines.append(f"Licence: {WEIGHTS_LICENCE}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    try:
        path = fetch_weights(args.name, args.cache_dir, url=args.url, progress=not args.quiet)
    except WeightsError as exc:
        _error(str(exc))
        return 1
    sys.stdout.write(f"{args.name}: {path} (verified)\n")
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    try:
        path = args.file or resolve_weights(args.name)
        verify_weights(path, args.name)
        blob = git_blob_sha1(path)
    except WeightsError as exc:
        _error(str(exc))
        return 1
    except OSError as exc:
        _error(f"{args.file}: {exc.strerror or exc}")
        return 1
    sys.stdout.write(f"{args.name}: {path} is valid (git blob id {blob})\n")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _crop_box(text: str) -> CropBox:
    try:
        return parse_crop(text)
    except CropError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cpu_count() -> int:
    # The CPUs this process may run on (a container's cpuset), not the host's.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _error(message: str, *, prefix: str = "error") -> None:
    sys.stderr.write(f"{prefix}: {message}\n")
