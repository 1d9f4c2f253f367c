"""Adaptive levels: the working level of each stratum moves with its realized rejections (ACI).

Conformal p-values control the rejection rate only while the scores are exchangeable. A run's
scores drift (within a turn bucket, with the question, at a step change), and then "reject iff
p <= alpha" rejects more or less than alpha. Adaptive conformal inference (Gibbs & Candès 2021)
keeps the exact p-value and moves the threshold instead: per stratum,

    alpha_{t+1} = alpha_t + gamma * (alpha - err_t),     err_t = 1{p_t <= alpha_t},

starting at alpha_1 = alpha. alpha_t may leave [0, 1] (then every test accepts, or rejects): that
is what bounds it, alpha_t in [-gamma (1 - alpha), 1 + gamma alpha], and the sum telescopes:

    |mean_{t <= T} err_t - alpha| = |alpha_{T+1} - alpha_1| / (gamma T)
                                  <= (max(alpha_1, 1 - alpha_1) + gamma) / (gamma T)

for ANY sequence of p-values: no exchangeability, no model of the drift. The default gamma = 0.01
gives at most 0.00505 at T = 20,000 tests for every alpha (+-0.01 needs gamma >= 1/199).

Since the telescoped sum is all that matters, a level is stored as exact counts: alpha_t =
alpha + gamma (alpha n - k) after n tests with k rejections. No float drift, and a resumed run
restores the level from its recorded decisions in any order.

Three-way rule (alpha_resample): two levels adapt, each on its own event. The takeover level on
err = takeover (target: alpha); the rejection level on err = rejected, i.e. resample or takeover
(target: alpha_resample). A decision uses the rejection level max(a_R, a_T), so the regions never
invert; then rejections are exactly err_R, and a_R stays in [-(1 + 2 gamma), 1 + gamma] (below 0
it can only fall while takeovers run ahead of alpha, which the takeover level bounds), giving
|rejection rate - alpha_resample| <= (1 + alpha_resample + 2 gamma) / (gamma T): <= 0.01 at
T = 20,000 with gamma = 0.01 for alpha_resample <= 0.98.
"""
from __future__ import annotations

import math
import numbers
import threading
from dataclasses import dataclass
from typing import Dict, Hashable, Optional, Tuple

from .intervals import check_alpha

DEFAULT_GAMMA = 0.01


def check_gamma(gamma: float, name: str = "gamma") -> float:
    """A step size in (0, 1] (ValueError naming `name`)."""
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(gamma).__name__}")
    if not 0.0 < float(gamma) <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {gamma!r}")
    return float(gamma)


def aci_bound(alpha: float, gamma: float, tests: int, resample: bool = False) -> float:
    """The worst-case |realized rate - target| after `tests` tests of one stratum (module doc):
    (max(alpha, 1 - alpha) + gamma)/(gamma T) for the takeover level, (1 + alpha + 2 gamma)/(gamma T)
    for the rejection level of the three-way rule (alpha = alpha_resample); inf before any test."""
    if tests <= 0:
        return math.inf
    numerator = 1 + alpha + 2 * gamma if resample else max(alpha, 1 - alpha) + gamma
    return numerator / (gamma * tests)


@dataclass
class LevelCounts:
    """One stratum's tests, takeovers and rejections (resample or takeover) so far."""

    tests: int = 0
    takeovers: int = 0
    rejections: int = 0


@dataclass(frozen=True)
class Levels:
    """The working levels one decision uses: takeover iff p <= takeover; else resample iff
    p <= resample (None: two-way rule); else accept."""

    takeover: float
    resample: Optional[float] = None


class AdaptiveLevels:
    """Per-stratum ACI levels for the takeover level alpha (and the rejection level
    alpha_resample of the three-way rule). Thread-safe; `level(key)` then `record(key, ...)`."""

    def __init__(self, alpha: float, alpha_resample: Optional[float] = None, gamma: float = DEFAULT_GAMMA) -> None:
        self.alpha = check_alpha(alpha)
        self.alpha_resample = None if alpha_resample is None else check_alpha(alpha_resample, "alpha_resample")
        if self.alpha_resample is not None and self.alpha_resample < self.alpha:
            raise ValueError(f"alpha_resample ({alpha_resample}) must be >= alpha ({alpha})")
        self.gamma = check_gamma(gamma)
        self._counts: Dict[Hashable, LevelCounts] = {}
        self._lock = threading.Lock()

    def level(self, key: Hashable) -> Levels:
        """The working levels of stratum `key` now (alpha, alpha_resample before its first test)."""
        with self._lock:
            c = self._counts.get(key) or LevelCounts()
        takeover = self.alpha + self.gamma * (self.alpha * c.tests - c.takeovers)
        if self.alpha_resample is None:
            return Levels(takeover)
        rejection = self.alpha_resample + self.gamma * (self.alpha_resample * c.tests - c.rejections)
        return Levels(takeover, max(rejection, takeover))  # never inverted: see the module doc

    def record(self, key: Hashable, decision: str) -> None:
        """One test of stratum `key` decided `decision` ("accept", "resample" or "takeover")."""
        if decision not in ("accept", "resample", "takeover"):
            raise ValueError(f"decision must be 'accept', 'resample' or 'takeover', got {decision!r}")
        hash(key)
        with self._lock:
            c = self._counts.setdefault(key, LevelCounts())
            c.tests += 1
            c.takeovers += decision == "takeover"
            c.rejections += decision != "accept"

    def counts(self, key: Hashable) -> LevelCounts:
        with self._lock:
            c = self._counts.get(key) or LevelCounts()
            return LevelCounts(c.tests, c.takeovers, c.rejections)

    def strata(self) -> Tuple[Hashable, ...]:
        with self._lock:
            return tuple(self._counts)

    def __repr__(self) -> str:
        return (f"AdaptiveLevels(alpha={self.alpha}, alpha_resample={self.alpha_resample}, gamma={self.gamma}, "
                f"strata={len(self._counts)})")


def decide_at(p: float, levels: Levels) -> str:
    """"accept", "resample" or "takeover" for p-value p at working levels that may lie outside
    [0, 1] (a level below 0 accepts every p, one at or above 1 rejects every p)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a number in [0, 1], got {p!r}")
    if p <= levels.takeover:
        return "takeover"
    if levels.resample is not None and p <= levels.resample:
        return "resample"
    return "accept"
