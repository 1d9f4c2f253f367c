"""Question-clustered intervals for a rejection rate: hand-computed values, and coverage.

Simulation: runs of G questions, each with 20-60 tests whose rejection probability is the question's
own, drawn from Beta with mean alpha = 0.2 and intra-question correlation 0.12 (the run-to-run
spread of the rate is then ~2.4x the binomial one, as measured on drifting runs). Over 400 runs the
cluster-robust interval covers alpha ~95% of the time and the cluster bootstrap ~93%; Clopper-
Pearson, which assumes independent tests (the broken variant here), covers only ~60%. Without
question effects all three cover.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import betaincinv

from a1.calibration import cluster_bootstrap_interval, cluster_robust_interval
from a1.calibration.clustered import cluster_robust_bounds, clustered_summary

ALPHA, RUNS, CLUSTERS = 0.2, 400, 30


def clustered_runs(rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[RUNS, CLUSTERS] rejections and tests; rho = 0: independent tests at rate ALPHA."""
    rng = np.random.default_rng(seed)
    tests = rng.integers(20, 61, (RUNS, CLUSTERS))
    if rho == 0:
        return rng.binomial(tests, ALPHA), tests
    scale = 1 / rho - 1
    p = rng.beta(ALPHA * scale, (1 - ALPHA) * scale, (RUNS, CLUSTERS))
    return rng.binomial(tests, p), tests


def coverage(rho: float, seed: int = 1) -> dict[str, float]:
    y, n = clustered_runs(rho, seed)
    lo, hi = cluster_robust_bounds(y, n)
    k, total = y.sum(axis=1), n.sum(axis=1)
    cp_lo = np.where(k > 0, betaincinv(k, total - k + 1, 0.025), 0.0)  # Clopper-Pearson, vectorized
    cp_hi = np.where(k < total, betaincinv(k + 1, total - k, 0.975), 1.0)
    boot = [cluster_bootstrap_interval(y[r], n[r], seed=r) for r in range(RUNS)]
    return {"cluster": float(((lo <= ALPHA) & (ALPHA <= hi)).mean()),
            "cp": float(((cp_lo <= ALPHA) & (ALPHA <= cp_hi)).mean()),
            "bootstrap": float(np.mean([b[0] <= ALPHA <= b[1] for b in boot])),
            "spread": float((k / total).std() / math.sqrt(ALPHA * (1 - ALPHA) / total.mean()))}


def test_cluster_robust_by_hand():
    y, n = [1, 5, 0], [10, 10, 8]
    r = 6 / 28
    var = 3 / 2 * sum((yc - r * nc) ** 2 for yc, nc in zip(y, n)) / 28**2
    t = 4.302652729911275  # Student t, 2 df, 0.975
    low, high = cluster_robust_interval(y, n)
    assert low == pytest.approx(max(0.0, r - t * math.sqrt(var))) and high == pytest.approx(r + t * math.sqrt(var))
    assert cluster_robust_interval([3], [10]) is None  # one cluster: no spread between clusters to measure
    assert cluster_robust_interval([3, 0], [10, 0]) is None  # a cluster without tests does not count


def test_bootstrap_is_seeded_and_brackets_the_rate():
    y, n = [1, 5, 0, 2, 3], [10, 10, 8, 9, 12]
    a, b = cluster_bootstrap_interval(y, n, seed=3), cluster_bootstrap_interval(y, n, seed=3)
    assert a == b and a[0] <= sum(y) / sum(n) <= a[1]
    assert cluster_bootstrap_interval(y, n, seed=4) != a
    assert cluster_bootstrap_interval([1], [4]) is None
    summary = clustered_summary({"q1": [1, 10], "q2": [5, 10]})
    assert summary["clusters"] == 2 and summary["ci_cluster"] == list(cluster_robust_interval([1, 5], [10, 10]))


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        cluster_robust_interval([1, 2], [3])
    with pytest.raises(ValueError, match="rejected <= tested"):
        cluster_robust_interval([4, 1], [3, 2])
    with pytest.raises(ValueError, match="resamples"):
        cluster_bootstrap_interval([1, 2], [3, 4], resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        cluster_robust_interval([1, 2], [3, 4], confidence=1.0)


def test_clustered_intervals_cover_with_question_effects_and_clopper_pearson_does_not():
    got = coverage(rho=0.12)
    assert 2.0 < got["spread"] < 3.0, got  # the run-to-run spread: ~2.4x the binomial one
    assert 0.92 <= got["cluster"] <= 0.98, got
    assert 0.90 <= got["bootstrap"] <= 0.98, got
    assert got["cp"] < 0.80, got  # the broken variant: independent tests assumed


def test_without_question_effects_all_cover():
    got = coverage(rho=0.0, seed=2)
    assert 0.92 <= got["cluster"] <= 0.98 and 0.90 <= got["bootstrap"] <= 0.98, got
    assert got["cp"] >= 0.93, got
