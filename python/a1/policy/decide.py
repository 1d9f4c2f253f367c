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
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

from a1.calibration import Levels, decide_at

ACTIONS = ("accept", "resample", "takeover")


def _level(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not 0.0 < float(value) < 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class DecisionRule:
    """The levels of the rule, checked once when it is built (a run builds one; its steps then
    only check their p-values)."""

    alpha_takeover: float
    alpha_resample: Optional[float] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha_takeover", _level(self.alpha_takeover, "alpha_takeover"))
        if self.alpha_resample is not None:
            object.__setattr__(self, "alpha_resample", _level(self.alpha_resample, "alpha_resample"))
            if self.alpha_resample < self.alpha_takeover:
                raise ValueError(f"alpha_resample ({self.alpha_resample}) must be >= alpha_takeover "
                                 f"({self.alpha_takeover})")

    def __call__(self, p: float) -> str:
        """"accept", "resample" or "takeover" for p-value `p` (see the module doc)."""
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"p must be a real number, got {type(p).__name__}")
        p = float(p)
        if math.isnan(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        return decide_at(p, Levels(self.alpha_takeover, self.alpha_resample))  # the one three-way rule


def decide(p: float, alpha_takeover: float, alpha_resample: Optional[float] = None) -> str:
    """Returns "accept", "resample" or "takeover" for p-value `p` (see the module doc)."""
    return DecisionRule(alpha_takeover, alpha_resample)(p)


class SyncQuota:
    """Sync mode's takeovers per barrier, budget-matched to A1 at the same alpha: a running credit
    of alpha per tested step, carried across every barrier of the run (questions included), so
    that after barriers of n_1..n_B steps exactly floor(alpha * (n_1 + ... + n_B)) steps have been
    taken over: the run's takeover fraction is alpha within 1 / (n_1 + ... + n_B). (Taking
    ceil(alpha * n) at each barrier overspends: at alpha = 0.2 it takes 1 of 4, 1 of 3, ..., 30% of
    a run's steps.) Exact rational arithmetic: no float drift over long runs."""

    def __init__(self, alpha: float) -> None:
        self.alpha = Fraction(_level(alpha, "alpha"))
        self.credit = Fraction(0)

    def take(self, num_steps: int) -> int:
        """How many of a barrier's num_steps steps (its worst-scored) are taken over."""
        self.credit += self.alpha * num_steps
        taken = min(num_steps, math.floor(self.credit))
        self.credit -= taken
        return taken
