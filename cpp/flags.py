"""The compiler and linker flags of a C++ program built against the installed torch wheel's libtorch
(its headers and libraries; no CMake, no download). `make cpp` compiles cpp/mlp_load.cpp with them.

Usage:
    python cpp/flags.py        # prints the flags on one line
"""

from __future__ import annotations

import os

import torch
from torch.utils import cpp_extension


def flags() -> list[str]:
    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)  # the wheel's libstdc++ ABI: a mismatch fails at link time
    return [*(f"-I{path}" for path in cpp_extension.include_paths()), f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
            f"-L{lib}", f"-Wl,-rpath,{lib}", "-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10"]


if __name__ == "__main__":
    print(" ".join(flags()))
