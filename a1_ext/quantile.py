"""QuantileBuffer: calibration scores of one conformal stratum, with exact conformal queries.

The storage and the queries are C++ (`csrc/quantile/quantile_buffer.h`): many threads may push
concurrently without a lock (the GIL is released in every call), and queries read only committed
scores. This wrapper converts and checks arguments so that errors name what was wrong.

Statistics (docs/statistics.md), for the n scores s_1..s_n in the buffer and a test score s:
  p_value(s)                = (1 + #{s_i >= s}) / (n + 1)
  p_value(s, smoothed=True) = (#{s_i > s} + u * (1 + #{s_i == s})) / (n + 1),  u ~ U(0, 1)
  threshold(alpha)          = k-th smallest s_i, k = ceil((n + 1)(1 - alpha)); +inf when k > n
so that `s > threshold(alpha)` exactly when `p_value(s) <= alpha` (reject).
"""
from __future__ import annotations

import numbers
import sys
from typing import Optional, Sequence, Union

import torch

from . import _C

Scores = Union[torch.Tensor, Sequence[float]]
MAX_CAPACITY = sys.maxsize  # the largest container size Python (and a signed 64-bit ticket) handles
SLOT_BYTES = 16  # one score and its ticket


def _as_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise TypeError(f"{name} must be a real number, got a tensor of shape {tuple(value.shape)}")
    return float(value)


class QuantileBuffer:
    """Thread-safe buffer of nonconformity scores answering exact conformal p-values/thresholds.

    Args:
        capacity: most scores the buffer can hold (memory is reserved up front, 16 bytes each).
            Without a window, pushing past it raises OverflowError and inserts nothing.
        window: if given, keep only the `window` most recent scores (window <= capacity): each
            push beyond that evicts the oldest score, and the buffer never overflows.

    NaN scores are rejected with ValueError (+-inf are allowed). Queries that run while other
    threads push see each score either entirely or not at all; they are exact once pushes stop.
    """

    def __init__(self, capacity: int = 1 << 16, window: Optional[int] = None) -> None:
        # C++ takes size_t: past MAX_CAPACITY pybind11 answered "incompatible constructor arguments"
        if isinstance(capacity, bool) or not isinstance(capacity, numbers.Integral) or not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be an int in [1, {MAX_CAPACITY}], got {capacity!r}")
        if window is not None:
            if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
                raise ValueError(f"window must be None or a positive int, got {window!r}")
            if window > capacity:
                raise ValueError(f"window must be <= capacity ({capacity}), got {window}")
        slots = int(window or capacity)
        try:
            self._impl = _C.QuantileBuffer(int(capacity), int(window or 0))
        except MemoryError as err:  # "std::bad_alloc" alone does not say which argument asked for it
            what = f"window={window}" if window else f"capacity={capacity}"
            raise MemoryError(
                f"QuantileBuffer({what}) reserves {SLOT_BYTES} bytes per score up front ({slots * SLOT_BYTES} bytes), "
                f"which cannot be allocated ({err}); use a smaller {what.split('=')[0]}"
            ) from err

    @property
    def capacity(self) -> int:
        return self._impl.capacity

    @property
    def window(self) -> Optional[int]:
        return self._impl.window or None

    def push(self, score: float) -> int:
        """Appends one score; returns its position in the stream of pushes (0-based ticket)."""
        return self._impl.push(_as_float(score, "score"))

    def extend(self, scores: Scores) -> int:
        """Appends a 1-D tensor (any real dtype, any device) or a sequence of numbers, atomically:
        a NaN anywhere, or a batch that does not fit, inserts nothing. Returns the first ticket."""
        if isinstance(scores, torch.Tensor):
            values = scores.detach()
        else:
            try:
                values = torch.as_tensor(scores, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError) as err:
                raise TypeError(f"scores must be a 1-D tensor or a sequence of numbers: {err}") from None
        if values.dim() != 1:
            raise ValueError(f"scores must be 1-D, got shape {tuple(values.shape)}")
        if values.is_complex() or values.dtype == torch.bool:
            raise TypeError(f"scores must have a real dtype, got {values.dtype}")
        values = values.to(device="cpu", dtype=torch.float64).contiguous()
        # `values` stays referenced until the call returns, so the pointer stays valid.
        return self._impl.extend(values.data_ptr(), values.numel())

    def size(self) -> int:
        """Number of scores currently held (at most `window` when windowed)."""
        return self._impl.size()

    def __len__(self) -> int:
        return self._impl.size()

    def threshold(self, alpha: float) -> float:
        """Conformal threshold q̂: the ceil((n+1)(1-alpha))-th smallest score, +inf when that rank
        exceeds n (too few scores for any rejection at this alpha). Reject a test score s iff s > q̂."""
        return self._impl.threshold(_as_float(alpha, "alpha"))

    def p_value(
        self,
        score: float,
        smoothed: bool = False,
        u: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
    ) -> float:
        """Conformal p-value of `score` against the buffer (reject iff p <= alpha).

        smoothed=True breaks ties with u ~ U(0, 1), which makes p exactly uniform on exchangeable
        data; u is drawn from torch's RNG (optionally `generator`) unless given.
        """
        if not smoothed:
            if u is not None:
                raise ValueError("u is only used with smoothed=True")
            return self._impl.p_value(_as_float(score, "score"))
        if u is None:
            u = float(torch.rand((), dtype=torch.float64, generator=generator))
        else:
            u = _as_float(u, "u")
            if not 0.0 <= u <= 1.0:  # also rejects NaN
                raise ValueError(f"u must be in [0, 1], got {u}")
        return self._impl.p_value(_as_float(score, "score"), True, u)

    def snapshot(self) -> torch.Tensor:
        """Copy of the scores held, in arrival order, as a float64 CPU tensor."""
        return torch.from_numpy(self._impl.snapshot())

    def __repr__(self) -> str:
        window = f", window={self.window}" if self.window else ""
        return f"QuantileBuffer(size={len(self)}, capacity={self.capacity}{window})"
