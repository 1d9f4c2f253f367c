"""Synthetic runs through the policy's test path (StepTester): how well each calibration keeps the
rejection rate at alpha when the scores are not exchangeable, measured without a model.

A run: `questions` questions of `samples` samples, `concurrency` questions in flight, every live
sample drafting one step per round (as the driver interleaves them), a sample ending after each
turn with probability `end_rate` or at `max_turns`. A drafted step's score is

    slope * turn                              drift with the turn (inside a bucket too)
  + b_q,  b_q ~ N(trend * q / Q, question_sd^2) question random effects (a dataset sorted by
                                              difficulty: trend > 0)
  + h,    h ~ N(0, prefix_sd^2)               the prefix's effect, shared by the step's redrafts
  + shift * 1{q >= Q/2}                       a step change mid-run
  + bad_shift * 1{bad}, bad ~ Bernoulli(bad_rate) a bad step (what a test should catch)
  + e,    e ~ N(0, 1)

With the three-way rule a "resample" draws the step again (new e and bad, same h) up to
max_resamples times. `simulate` returns every test in arrival order; `rates` and `turn_errors`
summarise them. benchmarks/sim_rejection_control.py runs the long versions; the tests run short ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Union

import numpy as np

from a1.calibration import AdaptiveLevels, Calibrator

from .calibration_source import make_calibrator
from .config import PolicyConfig
from .step_test import StepTester


@dataclass(frozen=True)
class RunSpec:
    """A synthetic run (module doc)."""

    questions: int = 200
    samples: int = 4
    max_turns: int = 12
    concurrency: int = 8
    end_rate: float = 0.1
    slope: float = 0.15
    question_sd: float = 0.0
    trend: float = 0.0
    prefix_sd: float = 0.0
    shift: float = 0.0
    bad_rate: float = 0.0
    bad_shift: float = 2.0
    seed: int = 0


@dataclass(frozen=True)
class SimTest:
    """One test of a synthetic run."""

    question: int
    sample: int
    turn: int
    attempt: int
    score: float
    bad: bool
    stratum: str
    p_value: float
    decision: str
    in_warmup: bool
    level: float


def simulate(spec: RunSpec, cfg: PolicyConfig, calibration: Union[str, Calibrator] = "online",
             levels: Optional[AdaptiveLevels] = None, prior: Optional[Calibrator] = None) -> list[SimTest]:
    """Every test of the synthetic run `spec` under the settings `cfg` (alpha, alpha_resample,
    max_resamples, turn_edges, level, warmup, attempt_strata) and `calibration` ("online",
    "per-question", "adaptive" or a Calibrator, updated online), in arrival order."""
    if calibration == "adaptive":
        cfg = cfg.replace(level="adaptive")
    calibrator, _ = make_calibrator(calibration, cfg, {})
    tester = StepTester(cfg, calibrator, True, list(range(spec.questions)), levels, prior)
    rng = np.random.default_rng(spec.seed)
    effects = rng.normal(spec.trend * np.arange(spec.questions) / max(spec.questions, 1), spec.question_sd)
    tests: list[SimTest] = []
    waiting = list(range(spec.questions))
    live: list[list[int]] = []  # [question, sample, turn] of every live sample
    while waiting or live:
        while waiting and len({q for q, _, _ in live}) < spec.concurrency:
            q = waiting.pop(0)
            live += [[q, i, 0] for i in range(spec.samples)]
        for state in list(live):
            q, i, turn = state
            base = spec.slope * turn + effects[q] + rng.normal(0, spec.prefix_sd) + spec.shift * (q >= spec.questions / 2)
            for attempt in range(cfg.max_resamples + 1):
                bad = bool(rng.random() < spec.bad_rate)
                score = float(base + spec.bad_shift * bad + rng.normal())
                verdict = tester.test(score, turn, q, attempt)
                tests.append(SimTest(q, i, turn, attempt, score, bad, tester.stratum(turn, q, attempt), verdict.p_value,
                                     verdict.decision, verdict.in_warmup, verdict.levels.takeover))
                if verdict.decision != "resample":
                    break
            state[2] += 1
            if state[2] >= spec.max_turns or rng.random() < spec.end_rate:
                live.remove(state)
    return tests


def rate(tests: Iterable[SimTest], takeover: bool = False) -> float:
    """The fraction of tests rejected (resample or takeover), or taken over."""
    events = [t.decision == "takeover" if takeover else t.decision != "accept" for t in tests]
    return float(np.mean(events)) if events else float("nan")


def rates_by(tests: Iterable[SimTest], key: str, takeover: bool = False) -> dict:
    """{value of attribute `key`: (tests, rejection or takeover rate)}."""
    groups: dict = {}
    for t in tests:
        groups.setdefault(getattr(t, key), []).append(t)
    return {k: (len(v), rate(v, takeover)) for k, v in sorted(groups.items(), key=lambda kv: str(kv[0]))}


def turn_errors(tests: list[SimTest], alpha: float, min_tests: int = 1) -> dict:
    """The per-turn rejection error: {"mean": test-weighted mean of |rate_t - alpha| over turns,
    "max": the largest, "turns": {turn: (tests, rate)}} over turns with at least min_tests tests."""
    turns = {t: v for t, v in rates_by(tests, "turn").items() if v[0] >= min_tests}
    weights = np.array([n for n, _ in turns.values()], dtype=np.float64)
    errors = np.array([abs(r - alpha) for _, r in turns.values()])
    return {"mean": float((weights * errors).sum() / weights.sum()), "max": float(errors.max()), "turns": turns}


def drift_stream(kind: str, tests: int, seed: int = 0) -> np.ndarray:
    """The scores of ONE stratum over `tests` tests (N(0, 1) noise), drifting in one of three ways:
    "within-bucket": the stratum holds two turns whose means differ by 0.35 sd, and the later turn's
        share of the stream grows from 0 to 1 over the run;
    "question": questions of 40 tests each with random effects (sd 0.5) arrive in dataset order,
        sorted by difficulty (+0.35 sd from the first to the last);
    "step": the scores shift up by 0.2 sd halfway through the run.
    A fixed level rejects about 0.02-0.03 more than alpha = 0.2 on each (docs/statistics.md)."""
    rng = np.random.default_rng(seed)
    t = np.arange(tests) / tests
    noise = rng.normal(size=tests)
    if kind == "within-bucket":
        return noise + (rng.random(tests) < t) * 0.35
    if kind == "question":
        question = np.arange(tests) // 40
        count = int(question[-1]) + 1
        effects = rng.normal(0.35 * np.arange(count) / max(count - 1, 1), 0.5)
        return noise + effects[question]
    if kind == "step":
        return noise + 0.2 * (t >= 0.5)
    raise ValueError(f"kind must be 'within-bucket', 'question' or 'step', got {kind!r}")


DRIFTS = ("within-bucket", "question", "step")


def stream_rates(scores: np.ndarray, cfg: PolicyConfig) -> dict:
    """One stratum's stream through StepTester (online, turn_edges=()): the realized rejection rate
    at cfg's level and at the fixed level alpha from the same p-values (online p-values do not
    depend on the decisions), with the ACI bound."""
    from a1.calibration import aci_bound

    cfg = cfg.replace(turn_edges=())
    calibrator, _ = make_calibrator("online", cfg, {})
    tester = StepTester(cfg, calibrator, True, [0])
    p = np.empty(len(scores))
    rejected = 0
    for i, s in enumerate(scores.tolist()):
        verdict = tester.test(s, 0, 0)
        p[i] = verdict.p_value
        rejected += verdict.decision != "accept"
    return {"tests": len(scores), "rate": rejected / len(scores), "fixed_rate": float((p <= cfg.alpha).mean()),
            "bound": aci_bound(cfg.alpha, cfg.level_gamma, len(scores))}
