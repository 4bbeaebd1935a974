"""The native engine (inference/_onednn.cpp + inference/native/), built when oneDNN's headers are installed.

Everything else is in pyproject.toml. Without oneDNN (Debian: libdnnl-dev) the build skips the
extension: fp32 then runs on ONNX Runtime's band graphs and bf16 on OpenVINO's, and int8 is refused.
"""

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
            optional=True,
        )
    ]
)
