"""The native engine (inference/_onednn.cpp + inference/native/), built when oneDNN's headers are installed.

Everything else is in pyproject.toml. Without oneDNN (Debian: libdnnl-dev) the build skips the
extension: the service then needs the graph fallback (the `peers` extra: fp32 on ONNX Runtime's band
graphs, bf16 on OpenVINO's; int8 is refused). ANIMEGAN_NATIVE=required makes a failed build of the
kernels an error instead (`make wheel`: the wheel exists to carry them).
"""

import os
from pathlib import Path

from setuptools import Extension, setup

NATIVE = sorted(str(path) for path in Path("inference/native").glob("*.cpp"))

setup(
    ext_modules=[
        Extension(
            "inference._onednn",
            ["inference/_onednn.cpp", *NATIVE],
            depends=sorted(str(path) for path in Path("inference/native").glob("*.hpp")),
            libraries=["dnnl"],
            extra_compile_args=["-O3", "-std=c++17", "-fopenmp", "-Wall"],
            extra_link_args=["-fopenmp"],
            optional=os.environ.get("ANIMEGAN_NATIVE") != "required",
        )
    ]
)
