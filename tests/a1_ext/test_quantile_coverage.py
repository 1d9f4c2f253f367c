"""Coverage simulations: the rejection rate of QuantileBuffer's conformal test on exchangeable data.

Reject iff p <= alpha. Theory (docs/statistics.md), for n continuous calibration scores:
  offline: P(reject) = floor((n + 1) alpha) / (n + 1), inside [alpha - 1/(n + 1), alpha];
  online, smoothed: every p-value is exactly U(0, 1) and independent, so rejections ~ Bin(L, alpha);
  online, unsmoothed: step t rejects with probability floor((t + 1) alpha) / (t + 1) <= alpha.
Rates are checked within SIGMAS binomial standard errors (fixed seeds, so the tests are
deterministic; a correct implementation fails one with probability < 1e-5).
"""
import math

import numpy as np
import pytest
import torch

from a1_ext import QuantileBuffer

SIGMAS = 4.5


@pytest.mark.parametrize("n,alpha", [(19, 0.1), (24, 0.1), (49, 0.05), (200, 0.2)])
def test_offline_rejection_rate_is_within_the_conformal_bounds(n, alpha):
    trials = 50000
    rng = np.random.default_rng(n)
    calibration = rng.lognormal(1.0, 0.5, (trials, n))  # perplexity-like, continuous
    tests = rng.lognormal(1.0, 0.5, trials)
    rejected = 0
    for cal, s in zip(torch.from_numpy(calibration), tests.tolist()):
        buf = QuantileBuffer(capacity=n)
        buf.extend(cal)
        reject = buf.p_value(s) <= alpha
        assert reject == (s > buf.threshold(alpha))
        rejected += reject
    rate = rejected / trials
    exact = math.floor((n + 1) * alpha + 1e-9) / (n + 1)
    sigma = math.sqrt(exact * (1 - exact) / trials)
    assert alpha - 1 / (n + 1) - SIGMAS * sigma <= rate <= alpha + SIGMAS * sigma, (rate, exact)
    assert abs(rate - exact) <= SIGMAS * sigma, (rate, exact)


@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_online_smoothed_rejection_rate_is_alpha(kind):
    alpha, steps = 0.1, 100000
    rng = np.random.default_rng(11)
    scores = rng.exponential(size=steps) if kind == "continuous" else rng.integers(0, 5, steps).astype(float)
    generator = torch.Generator().manual_seed(12)
    buf = QuantileBuffer(capacity=steps)
    rejected = 0
    for s in scores.tolist():  # p-value against all previous scores, then insert
        rejected += buf.p_value(s, smoothed=True, generator=generator) <= alpha
        buf.push(s)
    sigma = math.sqrt(alpha * (1 - alpha) / steps)
    assert abs(rejected / steps - alpha) <= SIGMAS * sigma, rejected / steps


def test_online_unsmoothed_rejection_rate_is_at_most_alpha():
    alpha, steps = 0.1, 30000
    scores = np.random.default_rng(13).normal(size=steps)
    buf = QuantileBuffer(capacity=steps)
    rejections = np.zeros(steps, dtype=bool)
    for t, s in enumerate(scores.tolist()):
        rejections[t] = buf.p_value(s) <= alpha
        buf.push(s)
    # Warm-up: below n = ceil(1/alpha) - 1 scores nothing can be rejected.
    warmup = math.ceil(1 / alpha) - 1
    assert not rejections[:warmup].any()
    per_step = np.array([math.floor((t + 1) * alpha + 1e-9) / (t + 1) for t in range(steps)])
    expected, sigma = per_step.mean(), math.sqrt((per_step * (1 - per_step)).sum()) / steps
    assert expected <= alpha
    assert abs(rejections.mean() - expected) <= SIGMAS * sigma, (rejections.mean(), expected)
