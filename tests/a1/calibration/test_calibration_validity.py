"""The rejection rate of "reject iff Calibrator.p_value <= alpha" on synthetic exchangeable streams.

Theory (see a1/calibration/calibrator.py), with n calibration scores and one fresh score:
  offline, continuous, unsmoothed: P(reject) = floor((n + 1) alpha)/(n + 1), in [alpha - 1/(n+1), alpha]
  offline, ties, unsmoothed:       P(reject) <= alpha (conservative)
  offline, smoothed:               P(reject) = alpha exactly, ties or not
  online, smoothed (p-value against all earlier scores, then insert): the p-values are independent
                                   uniforms, so the rejections are Binomial(L, alpha)
The guarantee is marginal over the calibration draw, so each offline trial draws a fresh
calibration set and tests one fresh score: trials are independent Bernoulli and a rate over
`trials` has sigma = sqrt(alpha (1 - alpha) / trials). Bands are SIGMAS = 3 sigma wide; seeds are
fixed, so the tests are deterministic. Data are generated with numpy; every p-value checked here
comes from Calibrator.p_value.

Each check is also run once on a deliberately broken variant and must reject it:
  - rule="reference" (the authors' uncorrected percentile #{s_i >= s}/n) rejects about
    alpha + 1/(n+1) at n = 20: above the band;
  - smoothing that ignores ties ((#{s_i > s} + U)/(n + 1)) is anti-conservative on tied scores;
  - unsmoothed p on tied scores misses the two-sided smoothed band (too conservative);
  - one unstratified calibrator on turn-drifting scores (and the authors' turn-0-only
    calibration) misses the per-stratum band on several strata.
"""
import functools
import math
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import pytest
import torch

from a1.calibration import Calibrator

ALPHAS = (0.05, 0.1, 0.25, 0.5)
SIGMAS = 3.0
N_CAL = 20          # offline calibration size: small, where the +1 of the conformal p matters
OFFLINE_TRIALS = 20000
ONLINE_STEPS = 20000


class TieBlindSmoothed(Calibrator):
    """Broken on purpose: smoothed p = (#{s_i > s} + U) / (n + 1), forgetting the tied scores."""

    def p_value(self, score, *, turn, question=None):
        buffer = self._buffers.get(self.stratum(turn=turn, question=question))
        u = float(torch.rand((), dtype=torch.float64, generator=self._generator))
        if buffer is None:
            return u
        return buffer.p_value(score, smoothed=True, u=0.0) + u / (len(buffer) + 1)


def sigma(alpha: float, trials: int) -> float:
    return math.sqrt(alpha * (1 - alpha) / trials)


def outside(rate: float, lo: float, hi: float) -> bool:
    return not lo <= rate <= hi


def draw(kind: str, rng: np.random.Generator, shape) -> np.ndarray:
    if kind == "continuous":
        return rng.lognormal(1.0, 0.5, shape)  # perplexity-like
    return np.clip(np.round(rng.normal(size=shape)), -2, 2)  # heavy ties: 5 distinct values


# -- offline -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def offline_data(kind: str) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng({"continuous": 101, "ties": 202}[kind])
    return draw(kind, rng, (OFFLINE_TRIALS, N_CAL)), draw(kind, rng, OFFLINE_TRIALS)


@functools.lru_cache(maxsize=None)
def offline_p_values(kind: str, variant: str) -> np.ndarray:
    """p[i]: test score i against a calibrator fitted on calibration draw i alone."""
    make: Callable[[int], Calibrator] = {  # trial i -> a fresh calibrator (U seeded by i)
        "conformal": lambda i: Calibrator(turn_edges=(), capacity=N_CAL),
        "smoothed": lambda i: Calibrator(turn_edges=(), capacity=N_CAL, smoothed=True, seed=i),
        "reference": lambda i: Calibrator(turn_edges=(), capacity=N_CAL, rule="reference"),
        "tie_blind": lambda i: TieBlindSmoothed(turn_edges=(), capacity=N_CAL, smoothed=True, seed=i),
    }[variant]
    calibration, tests = offline_data(kind)
    turns = np.zeros(N_CAL, dtype=np.int64)
    p = np.empty(OFFLINE_TRIALS)
    for i in range(OFFLINE_TRIALS):
        cal = make(i)
        cal.fit(calibration[i], turns)
        p[i] = cal.p_value(tests[i], turn=0)
    return p


def offline_rate(kind: str, variant: str, alpha: float) -> float:
    return float((offline_p_values(kind, variant) <= alpha).mean())


def exact_rate(alpha: float, n):
    """P(reject) for n continuous calibration scores, unsmoothed: floor((n + 1) alpha)/(n + 1)."""
    return np.floor((np.asarray(n) + 1) * alpha + 1e-9) / (np.asarray(n) + 1)


def continuous_band(alpha: float, n: int, trials: int) -> Tuple[float, float]:
    s = SIGMAS * sigma(alpha, trials)
    return alpha - 1 / (n + 1) - s, alpha + s


def exact_band(alpha: float, trials: int) -> Tuple[float, float]:
    s = SIGMAS * sigma(alpha, trials)
    return alpha - s, alpha + s


@pytest.mark.parametrize("alpha", ALPHAS)
def test_offline_continuous(alpha):
    rate = offline_rate("continuous", "conformal", alpha)
    assert not outside(rate, *continuous_band(alpha, N_CAL, OFFLINE_TRIALS)), rate
    exact = exact_rate(alpha, N_CAL)  # and, sharper, the exact finite-n rate
    assert not outside(rate, *exact_band(exact, OFFLINE_TRIALS)), (rate, exact)
    smoothed = offline_rate("continuous", "smoothed", alpha)
    assert not outside(smoothed, *exact_band(alpha, OFFLINE_TRIALS)), smoothed


@pytest.mark.parametrize("alpha", ALPHAS)
def test_offline_ties_unsmoothed_is_conservative_and_smoothed_is_exact(alpha):
    rate = offline_rate("ties", "conformal", alpha)
    assert rate <= alpha + SIGMAS * sigma(alpha, OFFLINE_TRIALS), rate
    smoothed = offline_rate("ties", "smoothed", alpha)
    assert not outside(smoothed, *exact_band(alpha, OFFLINE_TRIALS)), smoothed


@pytest.mark.parametrize("alpha", ALPHAS)
def test_offline_checks_reject_broken_variants(alpha):
    # The authors' uncorrected percentile: ~ (floor(alpha n) + 1)/(n + 1) = alpha + 1/(n+1) here.
    reference = offline_rate("continuous", "reference", alpha)
    assert outside(reference, *continuous_band(alpha, N_CAL, OFFLINE_TRIALS)), reference
    assert reference > alpha + SIGMAS * sigma(alpha, OFFLINE_TRIALS)
    # Smoothing that forgets ties rejects too much; no smoothing on ties rejects too little.
    tie_blind = offline_rate("ties", "tie_blind", alpha)
    assert outside(tie_blind, *exact_band(alpha, OFFLINE_TRIALS)), tie_blind
    unsmoothed = offline_rate("ties", "conformal", alpha)
    assert outside(unsmoothed, *exact_band(alpha, OFFLINE_TRIALS)), unsmoothed


# -- online ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def online_p_values(kind: str, variant: str) -> np.ndarray:
    """Each score of one stream: p-value against all earlier scores, then inserted."""
    stream = draw(kind, np.random.default_rng({"continuous": 303, "ties": 404}[kind]), ONLINE_STEPS).tolist()
    cls = {"smoothed": Calibrator, "tie_blind": TieBlindSmoothed}[variant]
    cal = cls(turn_edges=(), smoothed=True, seed=5)
    p = np.empty(ONLINE_STEPS)
    for t, s in enumerate(stream):
        p[t] = cal.p_value(s, turn=0)
        cal.update(s, turn=0)
    assert cal.n(turn=0) == ONLINE_STEPS
    return p


def online_rate(kind: str, variant: str, alpha: float) -> Tuple[float, int]:
    after_warmup = online_p_values(kind, variant)[Calibrator().warmup(alpha):]
    return float((after_warmup <= alpha).mean()), after_warmup.size


@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize("alpha", ALPHAS)
def test_online_smoothed_rate_is_alpha(kind, alpha):
    rate, steps = online_rate(kind, "smoothed", alpha)
    assert not outside(rate, *exact_band(alpha, steps)), rate


@pytest.mark.parametrize("alpha", ALPHAS)
def test_online_check_rejects_tie_blind_smoothing(alpha):
    rate, steps = online_rate("ties", "tie_blind", alpha)
    assert outside(rate, *exact_band(alpha, steps)), rate


# -- drift with the turn -----------------------------------------------------------------------
TURNS = 10
MU = 0.6 * np.arange(TURNS)   # turn t scores ~ N(0.6 t, 1): later steps score higher
DRIFT_CAL = 200               # calibration scores per trial, turns uniform over 0..9
DRIFT_TRIALS = 8000
EDGES = (1, 2, 4, 8)


def groups_of(edges: Sequence[int]) -> List[List[int]]:
    buckets = np.searchsorted(edges, np.arange(TURNS), side="right")
    return [np.flatnonzero(buckets == b).tolist() for b in np.unique(buckets)]


@functools.lru_cache(maxsize=None)
def drift_data(edges: Tuple[int, ...]):
    """Calibration (turns, scores) per trial, and per trial one test score per group of turns
    (group = stratum of `edges`), its turn uniform in the group; all scores independent."""
    rng = np.random.default_rng(505 + len(edges))
    cal_turns = rng.integers(0, TURNS, (DRIFT_TRIALS, DRIFT_CAL))
    cal_scores = rng.normal(MU[cal_turns], 1.0)
    groups = groups_of(edges)
    test_turns = np.stack([rng.choice(g, DRIFT_TRIALS) for g in groups], axis=1)
    test_scores = rng.normal(MU[test_turns], 1.0)
    return cal_turns, cal_scores, test_turns, test_scores


@functools.lru_cache(maxsize=None)
def drift_p_values(edges: Tuple[int, ...], calibrator_edges: Tuple[int, ...], turn0_only: bool = False):
    """p[i, g] and the stratum size n[i, g] behind it, for test group g of trial i."""
    cal_turns, cal_scores, test_turns, test_scores = drift_data(edges)
    p = np.empty(test_turns.shape)
    n = np.empty(test_turns.shape, dtype=np.int64)
    for i in range(DRIFT_TRIALS):
        cal = Calibrator(turn_edges=calibrator_edges, capacity=DRIFT_CAL)
        keep = cal_turns[i] == 0 if turn0_only else slice(None)
        cal.fit(cal_scores[i][keep], cal_turns[i][keep])
        for g, (turn, s) in enumerate(zip(test_turns[i].tolist(), test_scores[i].tolist())):
            p[i, g] = cal.p_value(s, turn=turn)
            n[i, g] = cal.n(turn=turn)
    return p, n


def drift_misses(edges, calibrator_edges, alpha, turn0_only=False, exact=False) -> Dict[int, Tuple[float, float, float]]:
    """Groups whose rejection rate is outside [alpha - mean 1/(n+1) - 3 sigma, alpha + 3 sigma]
    (n: the size of the stratum each test score met), or with exact=True outside the exact
    expectation mean(floor((n + 1) alpha)/(n + 1)) +- 3 sigma."""
    p, n = drift_p_values(tuple(edges), tuple(calibrator_edges), turn0_only)
    misses = {}
    for g in range(p.shape[1]):
        rate = float((p[:, g] <= alpha).mean())
        if exact:
            per_trial = exact_rate(alpha, n[:, g])
            s = SIGMAS * math.sqrt(float((per_trial * (1 - per_trial)).mean()) / DRIFT_TRIALS)
            lo, hi = float(per_trial.mean()) - s, float(per_trial.mean()) + s
        else:
            s = SIGMAS * sigma(alpha, DRIFT_TRIALS)
            lo, hi = alpha - float((1.0 / (n[:, g] + 1)).mean()) - s, alpha + s
        if outside(rate, lo, hi):
            misses[g] = (rate, lo, hi)
    return misses


@pytest.mark.parametrize("alpha", ALPHAS)
def test_turn_strata_meet_the_band_on_every_stratum(alpha):
    assert drift_misses(EDGES, EDGES, alpha) == {}
    assert drift_misses(EDGES, EDGES, alpha, exact=True) == {}


@pytest.mark.parametrize("alpha", ALPHAS)
def test_one_stratum_per_turn_meets_the_band_on_every_turn(alpha):
    per_turn = tuple(range(1, TURNS))
    assert drift_misses(per_turn, per_turn, alpha) == {}
    assert drift_misses(per_turn, per_turn, alpha, exact=True) == {}


@pytest.mark.parametrize("alpha", ALPHAS)
def test_unstratified_calibration_misses_on_drifting_turns(alpha):
    far = 10 * sigma(alpha, DRIFT_TRIALS)
    # One pool of scores from all turns: early turns almost never rejected, late ones far too often.
    pooled = drift_misses(EDGES, (), alpha)
    assert len(pooled) >= 2 and len(drift_misses(EDGES, (), alpha, exact=True)) >= 2, pooled
    assert max(rate for rate, _, _ in pooled.values()) > alpha + far, pooled
    # The authors' calibration on turn 0 only: right on turn 0, wrong on every later stratum.
    turn0 = drift_misses(EDGES, (), alpha, turn0_only=True)
    assert sorted(turn0) == [1, 2, 3, 4], turn0
    assert all(rate > alpha + far for rate, _, _ in turn0.values()), turn0
