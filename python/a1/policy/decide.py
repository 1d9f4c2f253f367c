"""decide: the action for one draft step from its conformal p-value.

p is the conformal p-value of the step's score (see a1.calibration): under exchangeability
P(p <= a) <= a for every level a, so the two thresholds bound how often each action fires on
ordinary steps:
    p > alpha_resample                   -> "accept"   (the draft step stands)
    alpha_takeover < p <= alpha_resample -> "resample" (draft the step again)
    p <= alpha_takeover                  -> "takeover" (the target model writes the step)
so takeovers happen on at most alpha_takeover of ordinary steps and resample-or-takeover on at
most alpha_resample. Without alpha_resample there is one level: takeover or accept.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

ACTIONS = ("accept", "resample", "takeover")


def _level(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not 0.0 < float(value) < 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def decide(p: float, alpha_takeover: float, alpha_resample: Optional[float] = None) -> str:
    """Returns "accept", "resample" or "takeover" for p-value `p` (see the module doc)."""
    alpha_takeover = _level(alpha_takeover, "alpha_takeover")
    if alpha_resample is not None:
        alpha_resample = _level(alpha_resample, "alpha_resample")
        if alpha_resample < alpha_takeover:
            raise ValueError(f"alpha_resample ({alpha_resample}) must be >= alpha_takeover ({alpha_takeover})")
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a real number, got {type(p).__name__}")
    p = float(p)
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    if p <= alpha_takeover:
        return "takeover"
    if alpha_resample is not None and p <= alpha_resample:
        return "resample"
    return "accept"
