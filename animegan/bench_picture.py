"""`animegan bench --picture FILE`: the int8 engine beside the fp32 one, as a picture for the docs.

For the first `--images` photos given (`--photos`, at max side 320): the photo, the fp32 engine's
result, the int8 engine's result and their difference (absolute, per channel, times 8 on black),
side by side; one row per photo, PSNR and largest difference written on each row. A .jpg file is
saved at quality 92 (small enough for the docs), anything else losslessly.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from animegan.bench_report import psnr, say
from animegan.bench_worker import photo_files

SIDE = 320
GAIN = 8


def run(args: argparse.Namespace, weights: str) -> dict[str, Any]:
    from PIL import Image, ImageDraw

    from imaging.decode import decode_image
    from inference.pipeline import Stylizer

    if args.photos is None or weights == "random":
        raise SystemExit("--picture needs --photos DIR and real weights")
    engines = {
        precision: Stylizer.load(
            "hayao",
            weights_path=Path(weights),
            threads=args.threads,
            align_corners=args.align_corners,
            precision=precision,
        )
        for precision in ("fp32", "int8")
    }
    rows, figures = [], []
    for path in photo_files(args.photos)[: args.images]:
        photo = decode_image(path.read_bytes(), max_side=SIDE).image
        fp32, int8 = (np.asarray(engines[p].stylize(photo)) for p in ("fp32", "int8"))
        diff = np.clip(np.abs(fp32.astype(int) - int8) * GAIN, 0, 255).astype(np.uint8)
        row = np.concatenate([np.asarray(photo), fp32, int8, diff], axis=1)
        figure = {"photo": path.name, "psnr": psnr(int8, fp32), "max_diff": int(np.abs(fp32.astype(int) - int8).max())}
        canvas = Image.fromarray(row)
        ImageDraw.Draw(canvas).text(
            (4, 4), f"{path.name}: int8 {figure['psnr']:.1f} dB, max {figure['max_diff']}", fill=(255, 255, 0)
        )
        rows.append(np.asarray(canvas))
        figures.append(figure)
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    picture = Image.fromarray(np.concatenate(padded, axis=0))
    if args.picture.suffix.lower() in (".jpg", ".jpeg"):
        picture.save(args.picture, quality=92)
    else:
        picture.save(args.picture, optimize=True)
    return {"file": str(args.picture), "rows": figures}


def print_picture(result: dict[str, Any]) -> None:
    say(f"\n{result['file']}: photo | fp32 | int8 | difference x{GAIN}")
    for row in result["rows"]:
        say(f"- {row['photo']}: {row['psnr']:.1f} dB, largest difference {row['max_diff']}")
