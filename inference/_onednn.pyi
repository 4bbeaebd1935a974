"""Types of the native engine (inference/_onednn.cpp, inference/native/); every argument is checked there."""

from typing import Final

import numpy as np

DNNL_VERSION_MAJOR: Final[int]

class Conv:
    """A conv layer on oneDNN: mode f32, bf16 (f32_out: float32 output) or int8 (s8 weights per output channel)."""

    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    groups: int
    mode: str
    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray | None,
        stride: int,
        groups: int,
        mode: str = "f32",
        f32_out: bool = False,
    ) -> None: ...
    def run(self, src: np.ndarray, dst: np.ndarray, qscale: float = 1.0, qzero: float = 0.0) -> None: ...
    def weight_scales(self) -> list[float]: ...
    def trim(self) -> None: ...

class Map:
    """A feature map as row bands (f32, bf16 or u8 with a scale and offset per row and channel)."""

    channels: int
    height: int
    width: int
    rows: int
    store: str
    def totals(self, sums: np.ndarray, sumsqs: np.ndarray, mins: np.ndarray, maxs: np.ndarray) -> int: ...
    def read(self, out: np.ndarray) -> None: ...
    def release(self) -> None: ...

class Runner:
    """Runs whole layers band by band on `threads` native threads, the GIL released."""

    threads: int
    def __init__(self, threads: int = 1) -> None: ...
    def load_map(self, values: np.ndarray, rows: int, store: str) -> Map: ...
    def head_stats(self, image: np.ndarray, first: Conv, rows: int) -> Map: ...
    def head(
        self,
        image: np.ndarray,
        first: Conv,
        second: Conv,
        scale: np.ndarray,
        shift: np.ndarray,
        qscale: float,
        qzero: float,
        rows: int,
        store: str,
    ) -> Map: ...
    def conv(
        self,
        src: Map,
        conv: Conv,
        scale: np.ndarray | None,
        shift: np.ndarray | None,
        lrelu: bool,
        qscale: float,
        qzero: float,
        pads: tuple[int, int, int, int],
        rows: int,
        store: str,
        keep_source: bool,
    ) -> Map: ...
    def upsample_conv(
        self,
        src: Map,
        conv: Conv,
        scale: np.ndarray,
        shift: np.ndarray,
        qscale: float,
        qzero: float,
        row_first: np.ndarray,
        row_second: np.ndarray,
        row_weight: np.ndarray,
        col_first: np.ndarray,
        col_second: np.ndarray,
        col_weight: np.ndarray,
        rows: int,
        store: str,
    ) -> Map: ...
    def residual(self, project: Map, block_input: Map | None, scale: np.ndarray, shift: np.ndarray) -> None: ...
    def output(
        self,
        src: Map,
        conv: Conv,
        scale: np.ndarray,
        shift: np.ndarray,
        qscale: float,
        qzero: float,
        rgb: np.ndarray,
    ) -> None: ...
    def set_unit(self, bytes: int) -> None: ...
    def clear(self) -> None: ...
