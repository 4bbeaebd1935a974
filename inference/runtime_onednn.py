"""The native runtime: oneDNN convolutions on channels-last bands, a whole layer per call (`inference._onednn`).

The extension (`inference/_onednn.cpp`, `inference/native/`) owns each layer's band loop: halo
assembly with reflection, the pending GroupNorm affine and LeakyReLU, the conv (f32, bf16 or
u8 x s8 int8, picked per layer), per-row statistics and storage, on its own threads with the GIL
released; sizes, dtypes and strides are checked there and raise ValueError (also under
``python -O``). Maps stay channels-last between layers (f32, bf16, or u8 with a scale and offset
per row and channel), so no band pays a layout reorder.

The extension is built with the package when oneDNN's headers are there (Debian: libdnnl-dev;
`scripts/setup.sh` installs it), and carried with oneDNN by the manylinux wheel (`make wheel`);
`available()` says whether it loads. Without it the engine runs fp32 on ONNX Runtime's band graphs
and bf16 on OpenVINO's (the `peers` extra), and refuses int8. Importing this module loads nothing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from inference import network

if TYPE_CHECKING:
    from inference._onednn import Conv


def library_path() -> Path | None:
    """Where the built extension lies (`inference._onednn`), or None when it was not built."""
    spec = importlib.util.find_spec("inference._onednn")
    return Path(spec.origin) if spec is not None and spec.origin else None


def built() -> bool:
    """The extension is installed (without loading it or oneDNN: a worker's main process asks this)."""
    return library_path() is not None


@functools.cache
def _module() -> ModuleType | None:
    try:
        return importlib.import_module("inference._onednn")
    except ImportError:
        return None


def available() -> bool:
    """True when the native kernels load here (built, and oneDNN's library present)."""
    return _module() is not None


def native() -> ModuleType:
    """The extension module; raises OSError naming the fix when it is not built."""
    module = _module()
    if module is None:
        raise OSError("the native kernels (inference._onednn) are not built: install libdnnl-dev, then the package")
    return module


def make_conv(state_dict: Mapping[str, np.ndarray], spec: network.Conv, mode: str, *, f32_out: bool = False) -> Conv:
    """One layer of the table as a native conv (`inference._onednn.Conv`) in `mode` (f32, bf16, int8)."""
    weights = np.ascontiguousarray(state_dict[f"{spec.conv_key}.weight"], dtype=np.float32)
    bias = state_dict.get(f"{spec.conv_key}.bias") if spec.bias else None
    bias32 = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    conv: Conv = native().Conv(weights, bias32, spec.stride, spec.groups, mode, f32_out)
    return conv
