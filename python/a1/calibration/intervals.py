"""Levels and exact binomial intervals for rejection rates.

A conformal test promises P(reject) <= alpha per stratum. What a run can check is the observed
count: k rejections out of n tests. `clopper_pearson` gives the exact (conservative) confidence
interval for the true rate from (k, n): if alpha lies above the interval the test rejected more
often than promised (beyond chance); if the interval lies far below alpha it is needlessly
conservative (e.g. unsmoothed p-values on tied scores, or strata still in warm-up).
"""
from __future__ import annotations

import math
import numbers
from typing import Tuple


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Returns alpha as a float after checking 0 < alpha < 1 (ValueError naming `name`)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(alpha).__name__}")
    if not 0.0 < float(alpha) < 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Exact two-sided binomial confidence interval for a rate observed as k successes in n trials.

    The Clopper-Pearson interval inverts two one-sided binomial tests, each at level
    (1 - confidence)/2; its bounds are Beta quantiles:
        lower = Beta(k, n - k + 1).ppf((1 - confidence)/2)      (0 when k = 0)
        upper = Beta(k + 1, n - k).ppf((1 + confidence)/2)      (1 when k = n)
    It covers the true rate with probability >= confidence for every rate and n (conservative,
    never anti-conservative, unlike the normal approximation at small n or extreme rates).
    n = 0 carries no information: (0, 1).
    """
    k, n = _check_count(k, "k"), _check_count(n, "n")
    if k > n:
        raise ValueError(f"k must be <= n, got k={k}, n={n}")
    confidence = check_alpha(confidence, "confidence")
    if n == 0:
        return (0.0, 1.0)
    from scipy.special import betaincinv  # inverse regularised incomplete beta = Beta ppf

    tail = (1.0 - confidence) / 2.0
    lower = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, tail))
    upper = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1.0 - tail))
    if not (math.isfinite(lower) and math.isfinite(upper)):  # defensive: scipy returns NaN on failure
        raise ArithmeticError(f"clopper_pearson({k}, {n}, {confidence}) failed: ({lower}, {upper})")
    return (lower, upper)
