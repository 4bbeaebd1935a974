"""Stylizer: the one object the worker and the CLI use to turn a PIL image into its anime version.

Loads and verifies a style's weights once, builds the engine once, then maps RGB images to
same-size RGB images. Torch is never imported on this path (the engine runs on the native oneDNN
kernels and the weights are read by the restricted checkpoint reader), so a worker process stays small.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inference import weights
from inference.engine import Engine
from inference.precision import Precision, resolve_precision

logger = logging.getLogger(__name__)


@dataclass
class Stylizer:
    """A loaded style: call ``stylize`` as often as needed; the engine is built once."""

    style: str
    align_corners: bool
    threads: int
    weights_path: Path
    engine: Engine

    @property
    def precision(self) -> Precision:
        """What the engine computes in (auto already resolved)."""
        return self.engine.precision

    @classmethod
    def load(
        cls,
        style: str,
        *,
        weights_dir: Path | None = None,
        cache_dir: Path | None = None,
        weights_path: Path | None = None,
        threads: int = 1,
        align_corners: bool | None = None,
        precision: Precision | str = "auto",
    ) -> Stylizer:
        """Resolve, verify and load ``style`` (or an explicit ``weights_path``); never downloads.

        ``precision`` is auto (bf16 where the CPU runs it natively, else int8 where it has the int8
        units, else fp32), fp32, bf16 or int8; one this machine cannot run (no units, or no runtime
        installed for it) raises PrecisionError before anything is loaded.
        """
        started = time.perf_counter()
        resolve_precision(str(precision))  # refuse an impossible precision before reading weights
        spec = weights.get_style(style)
        path = weights.resolve_weights(style, weights_dir=weights_dir, cache_dir=cache_dir, weights_path=weights_path)
        if weights_path is None:
            # An explicit file is the user's own checkpoint: only its layout is checked (by the reader).
            weights.verify_weights(path, style)
        state = weights.load_state_dict(path)
        corners = spec.align_corners if align_corners is None else align_corners
        engine = Engine(state, align_corners=corners, threads=threads, precision=precision)
        logger.info(
            "style loaded",
            extra={
                "style": style,
                "weights": str(path),
                "precision": str(engine.precision),
                "runtime": engine.runtime_name,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return cls(style=style, align_corners=corners, threads=threads, weights_path=path, engine=engine)

    def stylize(self, image: Image.Image) -> Image.Image:
        """Return the anime-style version of an RGB image, with exactly the same size."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        out = self.engine.run(np.asarray(image, dtype=np.uint8))
        return Image.fromarray(out)
