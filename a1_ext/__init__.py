"""a1_ext: the C++/CUDA kernels of a1 as torch ops (torch.ops.a1.*) with typed wrappers.

Importing this package loads the compiled library, which registers the ops and QuantileBuffer.
`a1_ext.generate` (the A1 policy, implemented in the `a1` package on top of these ops) is loaded
on first use, so that `a1` importing `a1_ext` never imports `a1` back.
"""
import torch  # noqa: F401  (loads libtorch before our library)

from . import _C  # noqa: F401
from . import ops
from .quantile import QuantileBuffer

__all__ = ["ops", "QuantileBuffer", "generate"]


def __getattr__(name: str):
    if name == "generate":
        from .generate import generate

        # importing the submodule bound its name here to the module: bind the function instead
        globals()["generate"] = generate
        return generate
    raise AttributeError(f"module 'a1_ext' has no attribute {name!r}")
