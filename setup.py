"""The native bf16 kernels (inference/_onednn.cpp), built when oneDNN's headers are installed.

Everything else is in pyproject.toml. Without oneDNN (Debian: libdnnl-dev) the build skips the
extension and the bf16 engine runs on OpenVINO's band graphs instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "inference._onednn",
            ["inference/_onednn.cpp"],
            libraries=["dnnl"],
            extra_compile_args=["-O3", "-std=c++17", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        )
    ]
)
