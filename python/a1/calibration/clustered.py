"""Intervals for a rejection rate whose tests come in clusters (the steps of one question).

Clopper-Pearson assumes independent tests. A run's tests are not: the steps of one question share
its difficulty, so they are rejected together or not at all, and the run-to-run spread of the rate
is the binomial one times sqrt(design effect) = sqrt(1 + (m - 1) rho) for clusters of m tests with
intra-cluster correlation rho (about 2.4x at m = 40, rho = 0.12). Two intervals that treat the
question as the unit of replication:

- cluster-robust (CR1) normal interval of the ratio estimator r = sum(y_c) / sum(n_c) (y_c the
  rejections and n_c the tests of cluster c, G clusters):
      Var(r) = G/(G - 1) * sum_c (y_c - r n_c)^2 / (sum_c n_c)^2,
  with a Student t quantile on G - 1 degrees of freedom (few clusters: wider), clipped to [0, 1];
- cluster bootstrap: resample the G clusters with replacement (seeded), percentile interval of r.

Both need at least 2 clusters (None otherwise: one cluster says nothing about the spread between
clusters). Functions take arrays of shape [..., G] so simulations can run many runs at once.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .intervals import check_alpha

BOOTSTRAP_RESAMPLES = 2000
Interval = Optional[Tuple[float, float]]


def _arrays(rejected, tested) -> Tuple[np.ndarray, np.ndarray]:
    y = np.asarray(rejected, dtype=np.float64)
    n = np.asarray(tested, dtype=np.float64)
    if y.shape != n.shape:
        raise ValueError(f"rejected and tested must have the same shape, got {y.shape} and {n.shape}")
    if y.ndim == 0:
        raise ValueError("rejected and tested must be per-cluster arrays (at least 1-D)")
    if (n < 0).any() or (y < 0).any() or (y > n).any():
        raise ValueError("per cluster: 0 <= rejected <= tested is required")
    return y, n


def cluster_robust_bounds(rejected, tested, confidence: float = 0.95) -> Tuple[np.ndarray, np.ndarray]:
    """CR1 interval bounds of sum(y)/sum(n) over the last axis (clusters with n_c = 0 ignored):
    arrays of the leading shape; NaN where fewer than 2 clusters have tests."""
    from scipy.stats import t as student_t

    confidence = check_alpha(confidence, "confidence")
    y, n = _arrays(rejected, tested)
    clusters = (n > 0).sum(axis=-1)
    total = n.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = y.sum(axis=-1) / total
        resid = y - rate[..., None] * n
        g = clusters.astype(np.float64)
        var = g / (g - 1) * (resid**2).sum(axis=-1) / total**2
        half = student_t.ppf((1 + confidence) / 2, np.maximum(g - 1, 1)) * np.sqrt(var)
    low, high = np.clip(rate - half, 0.0, 1.0), np.clip(rate + half, 0.0, 1.0)
    few = clusters < 2
    return np.where(few, np.nan, low), np.where(few, np.nan, high)


def cluster_robust_interval(rejected: Sequence[int], tested: Sequence[int], confidence: float = 0.95) -> Interval:
    """(low, high) of the CR1 interval for one run's clusters; None with fewer than 2 clusters."""
    low, high = cluster_robust_bounds(rejected, tested, confidence)
    return None if np.isnan(low) else (float(low), float(high))


def cluster_bootstrap_interval(rejected: Sequence[int], tested: Sequence[int], confidence: float = 0.95, *,
                               resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Interval:
    """Percentile interval of sum(y)/sum(n) over `resamples` cluster resamples (numpy generator
    seeded with `seed`: the same counts give the same interval); None with fewer than 2 clusters."""
    confidence = check_alpha(confidence, "confidence")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be an int >= 1, got {resamples!r}")
    y, n = _arrays(rejected, tested)
    if y.ndim != 1:
        raise ValueError(f"rejected and tested must be 1-D (one run's clusters), got shape {y.shape}")
    keep = n > 0
    y, n = y[keep], n[keep]
    g = y.size
    if g < 2:
        return None
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(g, np.full(g, 1.0 / g), size=resamples).astype(np.float64)  # [B, G]
    tests = weights @ n
    rates = (weights @ y) / np.where(tests > 0, tests, 1.0)
    tail = (1 - confidence) / 2
    low, high = np.quantile(rates, [tail, 1 - tail])
    return float(low), float(high)


def clustered_summary(per_cluster: dict, confidence: float = 0.95, seed: int = 0) -> dict:
    """{"clusters", "ci_cluster": [lo, hi] | None, "ci_bootstrap": [lo, hi] | None} of per-cluster
    [rejected, tested] counts (a dict cluster id -> pair)."""
    pairs = list(per_cluster.values())
    y = [p[0] for p in pairs]
    n = [p[1] for p in pairs]
    clusters = sum(1 for k in n if k > 0)
    if clusters < 2:
        return {"clusters": clusters, "ci_cluster": None, "ci_bootstrap": None}
    cr = cluster_robust_interval(y, n, confidence)
    boot = cluster_bootstrap_interval(y, n, confidence, seed=seed)
    return {"clusters": clusters, "ci_cluster": None if cr is None else list(cr),
            "ci_bootstrap": None if boot is None else list(boot)}
