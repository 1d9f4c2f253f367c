"""Sync mode spends A1's budget: over a run, the fraction of tested steps taken over at the
barriers is alpha (within 1 / tested steps), whatever the number of samples still live."""
from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

import a1_ext
from a1.calibration import Calibrator
from a1.policy.decide import SyncQuota


def ceil_per_barrier(alpha: float, sizes: list[int]) -> int:
    """The old quota (a deliberately broken variant): ceil(alpha * n) at every barrier."""
    return sum(math.ceil(alpha * n) for n in sizes)


@pytest.mark.parametrize("alpha", [0.2, 0.1, 0.05, 1 / 3, 0.37])
def test_the_quota_takes_alpha_of_all_steps_so_far(alpha):
    rng = random.Random(0)
    quota, taken, steps = SyncQuota(alpha), 0, 0
    for _ in range(500):
        n = rng.randint(1, 16)
        k = quota.take(n)
        assert 0 <= k <= n
        taken, steps = taken + k, steps + n
        assert taken == math.floor(Fraction(alpha) * steps)  # exact, after every barrier


def test_ceil_per_barrier_overspends():
    """The property above fails for the old rule: with N = 4 samples finishing one by one at
    alpha = 0.2 it takes 1 of 4, 1 of 3, 1 of 2 and 1 of 1."""
    sizes = [4] * 20 + [3, 2, 1] * 10
    steps = sum(sizes)
    assert ceil_per_barrier(0.2, sizes) / steps > 0.2 + 0.1
    quota = SyncQuota(0.2)
    assert abs(sum(quota.take(n) for n in sizes) / steps - 0.2) < 1 / steps


def test_a_sync_run_takes_over_alpha_of_its_tested_steps(tiny_target):
    """>= 400 tested steps of a real sync run (tiny model, N = 4): the realized rate is within 1.5
    points of alpha (exactly floor(alpha * tested) takeovers)."""
    alpha = 0.2
    prompts = [f"Question {i}: what is {i} + {i}?" for i in range(12)]
    results = a1_ext.generate(prompts, target=tiny_target, mode="sync", alpha=alpha, num_samples=4, max_tokens=96,
                              step_tokens=4, max_turns=12, progress=False, kv_cache_gb=0.05)
    steps = [s for r in results for sample in r.samples for s in sample.steps if s.tested]
    taken = sum(s.decision == "takeover" for s in steps)
    assert len(steps) >= 400
    assert abs(taken / len(steps) - alpha) <= 0.015
    assert taken == math.floor(Fraction(alpha) * len(steps))


def test_sync_refuses_what_it_cannot_do(tiny_target):
    with pytest.raises(ValueError, match="alpha_resample: sync mode"):
        a1_ext.generate(["hi"], target=tiny_target, mode="sync", alpha=0.1, alpha_resample=0.3, num_samples=2,
                        progress=False)
    with pytest.raises(ValueError, match="'conformal' p-values but mode 'reference'"):
        a1_ext.generate(["hi"], target=tiny_target, mode="reference", calibration=Calibrator(), num_samples=2,
                        progress=False)
