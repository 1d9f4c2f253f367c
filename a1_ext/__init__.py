"""a1_ext: the C++/CUDA kernels of a1 as torch ops (torch.ops.a1.*) with typed wrappers.

Importing this package loads the compiled library, which registers the ops and QuantileBuffer.
"""
import torch  # noqa: F401  (loads libtorch before our library)

from . import _C  # noqa: F401
from . import ops
from .generate import generate
from .quantile import QuantileBuffer

__all__ = ["ops", "QuantileBuffer", "generate"]
