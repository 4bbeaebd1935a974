"""`animegan bench --png`: bytes and encode time of the results' PNG at every zlib level.

The results of the photos given (`--photos`), stylized by the engine at the service's default
size (max side 1024), encoded in memory by Pillow at compress levels 0-9 (default filter
choice) and with zlib's run-length strategy: the median time of three encodes and the bytes,
summed over the photos. The level `imaging.encode` uses was picked from this table.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from animegan.bench_report import say
from animegan.bench_worker import photo_files

Z_FILTERED, Z_RLE = 1, 3  # zlib strategies (Pillow's compress_type)
SETTINGS: tuple[tuple[str, dict[str, int]], ...] = (
    *((f"level {level}", {"compress_level": level}) for level in range(10)),
    *((f"level {level}, Z_RLE", {"compress_level": level, "compress_type": Z_RLE}) for level in (1, 6, 9)),
    ("level 1, Z_FILTERED", {"compress_level": 1, "compress_type": Z_FILTERED}),
)


def _encode_seconds(image: Any, options: dict[str, int]) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(3):
        buffer = io.BytesIO()
        started = time.perf_counter()
        image.save(buffer, "PNG", **options)
        times.append(time.perf_counter() - started)
        size = buffer.tell()
    return statistics.median(times), size


def run(args: argparse.Namespace, weights: str) -> dict[str, Any]:
    from PIL import Image

    from imaging.decode import decode_image
    from inference.pipeline import Stylizer

    if args.photos is None or weights == "random":
        raise SystemExit("--png needs --photos DIR and real weights")
    stylizer = Stylizer.load(
        "hayao",
        weights_path=Path(weights),
        threads=args.threads,
        align_corners=args.align_corners,
        precision=args.precision,
    )
    results = []
    for path in photo_files(args.photos):
        rgb = np.asarray(stylizer.stylize(decode_image(path.read_bytes(), max_side=1024).image))
        results.append(Image.fromarray(rgb))
    pixels = sum(image.width * image.height for image in results)
    rows = []
    for label, options in SETTINGS:
        seconds, size = 0.0, 0
        for image in results:
            s, b = _encode_seconds(image, options)
            seconds, size = seconds + s, size + b
        rows.append({"setting": label, "ms_per_mpix": 1000 * seconds / (pixels / 1e6), "bytes": size})
    return {"photos": len(results), "megapixels": pixels / 1e6, "rows": rows}


def print_png(result: dict[str, Any]) -> None:
    say(f"\nPNG of {result['photos']} stylized photos ({result['megapixels']:.2f} MPix): encode time and size")
    say("| setting | ms per MPix | bytes per MPix | bytes vs level 6 |")
    say("|---|---|---|---|")
    base = next(row["bytes"] for row in result["rows"] if row["setting"] == "level 6")
    for row in result["rows"]:
        say(
            f"| {row['setting']} | {row['ms_per_mpix']:.0f} | {row['bytes'] / result['megapixels'] / 1e6:.2f} M "
            f"| {row['bytes'] / base:.2f}x |"
        )
