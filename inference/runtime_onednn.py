"""The native bf16 runtime: oneDNN convolutions on channels-last bf16 bands (`inference/_onednn.cpp`).

OpenVINO's band graphs spend about a third of their time converting each band between the
plain layout a graph is handed and the channels-last one its convolutions run in. Here the maps
are stored channels-last (rows x cols x C, bf16 bits in uint16 arrays), so a band goes straight
into oneDNN's bf16 convolution (AVX512_BF16 or AMX kernels, picked by oneDNN for the CPU) and
its output straight into the next map; norms, statistics, residual adds and the upsample are
small loops of the same library.

The library is built with the package when oneDNN's headers are there (Debian: libdnnl-dev;
`scripts/setup.sh` installs it); `available()` says whether it loaded, and the engine uses
OpenVINO's band graphs otherwise. Importing this module loads no inference runtime.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from inference import network

# Arrays go to the kernels as plain addresses (`array.ctypes.data`): a typed pointer per argument
# (`data_as`) cost about 50 ms per 1024x576 image in Python, under the GIL the band threads share.
_ADDR = ctypes.c_void_p
_LONG = ctypes.c_long


def library_path() -> Path | None:
    """Where the built extension lies (`inference._onednn`), or None when it was not built."""
    spec = importlib.util.find_spec("inference._onednn")
    return Path(spec.origin) if spec is not None and spec.origin else None


@functools.cache
def _library() -> ctypes.CDLL:
    path = library_path()
    if path is None:
        raise OSError(
            "the native bf16 kernels (inference._onednn) are not built: install libdnnl-dev, then the package"
        )
    lib = ctypes.CDLL(str(path))
    lib.ad_last_error.restype = ctypes.c_char_p
    lib.ad_conv_new.restype = ctypes.c_void_p
    lib.ad_conv_new.argtypes = [ctypes.c_int] * 5 + [_ADDR, _ADDR, ctypes.c_int]
    lib.ad_conv_free.argtypes = [ctypes.c_void_p]
    lib.ad_conv_trim.argtypes = [ctypes.c_void_p]
    lib.ad_conv_run.argtypes = [ctypes.c_void_p, _ADDR, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.ad_affine_lrelu.argtypes = [_ADDR, _LONG, _ADDR, _LONG, _LONG, _LONG, _LONG, _ADDR, _ADDR, ctypes.c_float]
    lib.ad_affine_add.argtypes = [_ADDR, _ADDR, _ADDR, _LONG, _LONG, _ADDR, _ADDR]
    lib.ad_stats.argtypes = [_ADDR, _LONG, _LONG, _LONG, _ADDR, _ADDR]
    lib.ad_to_bf16.argtypes = [_ADDR, _ADDR, _LONG]
    lib.ad_resample.argtypes = [_ADDR, _LONG, _LONG, _ADDR, _ADDR, _ADDR, _LONG, _ADDR, _ADDR, _ADDR, _LONG, _ADDR]
    return lib


def built() -> bool:
    """The extension is installed (without loading it or oneDNN: a worker's main process asks this)."""
    return library_path() is not None


def available() -> bool:
    """True when the native kernels load here (built, and oneDNN's library present)."""
    try:
        _library()
    except OSError:
        return False
    return True


def _ptr(array: np.ndarray) -> int:
    return int(array.ctypes.data)


def _checked(array: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    assert array.dtype == dtype, f"expected {np.dtype(dtype)}, got {array.dtype}"
    assert array.flags.c_contiguous, "native kernels take contiguous arrays"
    return array


class Conv:
    """One conv layer as a oneDNN primitive; `run` takes a padded (h, w, in) band, fills (oh, ow, out)."""

    def __init__(self, state_dict: Mapping[str, np.ndarray], spec: network.Conv, *, f32_out: bool = False) -> None:
        self.spec = spec
        self.f32_out = f32_out
        lib = _library()
        weights = np.ascontiguousarray(state_dict[f"{spec.conv_key}.weight"], dtype=np.float32)
        bias = state_dict.get(f"{spec.conv_key}.bias") if spec.bias else None
        bias32 = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        handle = lib.ad_conv_new(
            spec.in_ch,
            spec.out_ch,
            spec.kernel,
            spec.stride,
            spec.groups,
            _ptr(weights),
            None if bias32 is None else _ptr(bias32),
            int(f32_out),
        )
        if not handle:
            raise RuntimeError(f"{spec.name}: {lib.ad_last_error().decode()}")
        self._handle = ctypes.c_void_p(handle)
        self._lib = lib

    def out_shape(self, rows: int, cols: int) -> tuple[int, int, int]:
        k, s = self.spec.kernel, self.spec.stride
        return (rows - k) // s + 1, (cols - k) // s + 1, self.spec.out_ch

    def run(self, src: np.ndarray, out: np.ndarray) -> None:
        _checked(src, np.uint16)
        _checked(out, np.float32 if self.f32_out else np.uint16)
        rows, cols, channels = src.shape
        assert channels == self.spec.in_ch
        assert out.shape == self.out_shape(rows, cols), f"{self.spec.name}: {out.shape} != {self.out_shape(rows, cols)}"
        if self._lib.ad_conv_run(self._handle, _ptr(src), rows, cols, _ptr(out)):
            raise RuntimeError(f"{self.spec.name}: {self._lib.ad_last_error().decode()}")

    def trim(self) -> None:
        """Drops the cached primitives (kernels, bf16 weights) until the next run."""
        self._lib.ad_conv_trim(self._handle)

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            self._lib.ad_conv_free(handle)


def affine_lrelu(src: np.ndarray, dst: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> None:
    """dst = lrelu(src * scale + shift) for (rows, cols, C) views whose rows may be strided (padded buffers)."""
    rows, cols, channels = src.shape
    assert dst.shape == src.shape
    for view in (src, dst):
        assert view.dtype == np.uint16
        assert view.strides[1:] == (2 * channels, 2), "pixels and channels must be contiguous"
    _library().ad_affine_lrelu(
        _ptr(src),
        src.strides[0] // (2 * channels),
        _ptr(dst),
        dst.strides[0] // (2 * channels),
        rows,
        cols,
        channels,
        _ptr(_checked(scale, np.float32)),
        _ptr(_checked(shift, np.float32)),
        network.LRELU_SLOPE,
    )


def affine_add(p: np.ndarray, r: np.ndarray | None, dst: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> None:
    """dst = p * scale + shift (+ r): a block's last norm and its residual add."""
    channels = p.shape[-1]
    _library().ad_affine_add(
        _ptr(_checked(p, np.uint16)),
        None if r is None else _ptr(_checked(r, np.uint16)),
        _ptr(_checked(dst, np.uint16)),
        p.size // channels,
        channels,
        _ptr(_checked(scale, np.float32)),
        _ptr(_checked(shift, np.float32)),
    )


def stats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row, per-channel sums and sums of squares (float32, (rows, C)) of a (rows, cols, C) bf16 band."""
    rows, cols, channels = y.shape
    sums, sumsqs = np.empty((rows, channels), np.float32), np.empty((rows, channels), np.float32)
    _library().ad_stats(_ptr(_checked(y, np.uint16)), rows, cols, channels, _ptr(sums), _ptr(sumsqs))
    return sums, sumsqs


def to_bf16(src: np.ndarray, dst: np.ndarray) -> None:
    assert src.shape == dst.shape
    _library().ad_to_bf16(_ptr(_checked(src, np.float32)), _ptr(_checked(dst, np.uint16)), src.size)


def resample(
    src: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    cols: tuple[np.ndarray, np.ndarray, np.ndarray],
    dst: np.ndarray,
) -> None:
    """Bilinear resampling of (m, w, C) rows into dst (n_rows, n_cols, C) by (first, second, weight) tables."""
    r0, r1, rw = rows
    c0, c1, cw = cols
    _, width, channels = src.shape
    assert dst.shape == (len(r0), len(c0), channels)
    _library().ad_resample(
        _ptr(_checked(src, np.uint16)),
        width,
        channels,
        _ptr(_checked(r0, np.int32)),
        _ptr(_checked(r1, np.int32)),
        _ptr(_checked(rw, np.float32)),
        len(r0),
        _ptr(_checked(c0, np.int32)),
        _ptr(_checked(c1, np.int32)),
        _ptr(_checked(cw, np.float32)),
        len(c0),
        _ptr(_checked(dst, np.uint16)),
    )
