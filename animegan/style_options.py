"""The command-line options that choose a style, its weights file and its upsample mode.

Shared by `animegan stylize` (`animegan.stylize_cli`) and `animegan bench` (`animegan.bench`), so both
read `--style NAME`, `--weights FILE.pt` and `--align-corners` / `--no-align-corners` the same
way: the style defaults to the one the weights file is named after (else the default style),
and the upsample mode to that style's own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inference.precision import REQUESTS, default_precision
from inference.weights import DEFAULT_STYLE, STYLES, get_style


def add_style_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds `--style`, `--weights` and `--align-corners/--no-align-corners` to `parser`."""
    parser.add_argument(
        "--style",
        choices=list(STYLES),
        metavar="NAME",
        help=f"style to apply: {', '.join(STYLES)} (default: the style the --weights file is named after, "
        f"else {DEFAULT_STYLE})",
    )
    parser.add_argument(
        "--weights", type=Path, metavar="FILE.pt", help="use this weights file instead of looking one up"
    )
    parser.add_argument(
        "--align-corners",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="upsampling mode of the generator (default: the style's own)",
    )


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """Adds `--precision auto|fp32|bf16` (default: ANIMEGAN_PRECISION, else auto)."""
    parser.add_argument(
        "--precision",
        choices=REQUESTS,
        default=default_precision(),
        help="number format: auto (bf16 where the CPU runs it natively: AVX512_BF16 or AMX), fp32, or bf16 "
        "(refused on CPUs without it); default: ANIMEGAN_PRECISION, else auto",
    )


def style_named_by(weights: Path | None) -> str:
    """The style a weights file is named after (`hayao.pt` -> hayao), else the default style."""
    if weights is not None and weights.stem in STYLES:
        return weights.stem
    return DEFAULT_STYLE


def chosen_style(args: argparse.Namespace) -> str:
    """`--style`, else the style `--weights` is named after, else the default."""
    style: str = args.style or style_named_by(args.weights)
    return style


def chosen_align_corners(args: argparse.Namespace, style: str) -> bool:
    """`--align-corners` / `--no-align-corners`, else the style's own mode."""
    return get_style(style).align_corners if args.align_corners is None else bool(args.align_corners)
