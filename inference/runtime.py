"""The one seam between the band logic and an inference runtime.

`inference.engine` compiles each band graph once (`load`) and runs it band by band (`run`,
`run_rgb`), writing outputs straight into arrays it owns. Two runtimes implement it:

- `inference.runtime_ort.OrtRuntime`: fp32 on ONNX Runtime; maps are float32 arrays.
- `inference.runtime_openvino.OpenVinoRuntime`: bf16 on OpenVINO's CPU plugin; maps are stored
  as bf16 (uint16 arrays holding the bits) between layers, so the engine never does arithmetic
  on them itself: norms and residual adds run inside graphs (`scales_in_graph`).

Importing this module loads neither runtime; the engine imports the one its precision needs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np


class BandRuntime(Protocol):
    """What the engine needs of a runtime: compile a graph, run one band of it."""

    map_dtype: type[np.generic]
    name: str
    scales_in_graph: bool  # True: maps are never scaled by numpy (bf16), graphs apply every norm

    def load(self, model: bytes) -> Any: ...

    def run(
        self, graph: Any, feeds: Mapping[str, np.ndarray], out: np.ndarray | None, channels: int, *, last: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Runs a band graph writing `y` into `out`; returns its per-channel `sum` and `sumsq`."""
        ...

    def run_rgb(self, graph: Any, feeds: Mapping[str, np.ndarray], out: np.ndarray, *, last: bool) -> None:
        """Runs the final graph writing its uint8 `rgb` rows into `out`."""
        ...

    def end_step(self) -> None:
        """Called after every band of a step has run: a runtime may release per-step memory."""
        ...


def release_freed_memory() -> Callable[[], object]:
    """glibc keeps freed heap pages; malloc_trim hands them back so an idle worker shrinks."""
    path = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(path), "malloc_trim", None) if path else None
    if trim is None:  # not glibc (musl, macOS): nothing to trim
        return lambda: None
    return lambda: trim(0)
