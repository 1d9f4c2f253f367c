"""The online order, pinned: a score's p-value counts only the STRICTLY EARLIER scores of its own
stratum, then the score joins the stratum. A known score sequence goes through the policy's test
path (RunContext.test) and every p-value must equal the one computed here by hand.

The mutant that lets each score join its stratum before its own p-value is computed (so the
p-value counts itself: (2 + #{earlier >= s})/(n + 2) instead of (1 + #{earlier >= s})/(n + 1))
passed every policy and calibration test before this file; here it is run too and must fail.
(Mutation check, run by hand: patching that mutant into StepTester.test itself fails 10 of the 12
tests of this file, the end-to-end one included; only the two that build their own mutant pass.)
"""
from __future__ import annotations

import pytest
import torch

import a1
import a1_ext
from a1.calibration import Calibrator
from a1.policy import PolicyConfig
from a1.policy.context import RunContext
from a1.policy.step_test import StepTester, Verdict

# (score, turn, question, attempt): two turn strata, two questions, ties and a redraft
SEQUENCE = [(2.0, 0, 0, 0), (1.0, 0, 1, 0), (3.0, 1, 0, 0), (2.0, 0, 0, 0), (0.5, 1, 1, 0), (2.0, 0, 1, 0),
            (5.0, 1, 0, 0), (2.5, 0, 0, 1), (1.5, 1, 1, 0), (2.0, 0, 0, 0), (9.0, 0, 1, 0), (3.0, 1, 0, 1)]


class UpdateFirst(StepTester):
    """The mutant: the score joins its stratum before its p-value is computed."""

    def test(self, score, turn, question, attempt=0) -> Verdict:
        where = dict(turn=turn, question=self._question(question), attempt=attempt)
        self.calibrator.update(score, **where)
        p = self.calibrator.p_value(score, **where)
        return Verdict(p, False, "takeover" if p <= self.cfg.alpha else "accept", self.fixed_levels)


def stratum_of(turn, question, attempt, per_question, by_attempt):
    return (question if per_question else None, min(turn, 1), attempt if by_attempt else 0)


def by_hand(per_question: bool, by_attempt: bool, smoothed: bool, seed: int = 0) -> list[float]:
    """p-values from the strictly earlier scores of the same stratum (smoothed: the same U stream,
    one draw per test, as the Calibrator draws it)."""
    generator = torch.Generator().manual_seed(seed)
    seen: dict = {}
    out = []
    for score, turn, question, attempt in SEQUENCE:
        earlier = seen.setdefault(stratum_of(turn, question, attempt, per_question, by_attempt), [])
        n = len(earlier)
        if smoothed:
            u = float(torch.rand((), dtype=torch.float64, generator=generator))
            above, ties = sum(s > score for s in earlier), sum(s == score for s in earlier)
            out.append((above + u * (1 + ties)) / (n + 1))
        else:
            out.append((1 + sum(s >= score for s in earlier)) / (n + 1))
        earlier.append(score)
    return out


@pytest.fixture(scope="module")
def pair(tiny_target):
    return a1.LLM(tiny_target, kv_cache_gb=0.02).pair


def context(pair, per_question, by_attempt, smoothed, mutant=False) -> RunContext:
    cfg = PolicyConfig(alpha=0.2, alpha_resample=0.4, turn_edges=(1,), warmup="coin", attempt_strata=by_attempt)
    calibrator = Calibrator((1,), per_question=per_question, smoothed=smoothed, by_attempt=by_attempt)
    ctx = RunContext(pair, cfg, calibrator, True, ["qa", "qb"])
    if mutant:
        ctx.tester = UpdateFirst(cfg, calibrator, True, ["qa", "qb"])
    return ctx


def p_values(ctx: RunContext) -> list[float]:
    return [ctx.test(score, turn, question, attempt).p_value for score, turn, question, attempt in SEQUENCE]


@pytest.mark.parametrize("smoothed", [False, True])
@pytest.mark.parametrize("per_question", [False, True])
@pytest.mark.parametrize("by_attempt", [False, True])
def test_p_values_come_from_strictly_earlier_scores_of_the_stratum(pair, per_question, by_attempt, smoothed):
    expected = by_hand(per_question, by_attempt, smoothed)
    assert p_values(context(pair, per_question, by_attempt, smoothed)) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("smoothed", [False, True])
def test_the_update_first_mutant_fails(pair, smoothed):
    expected = by_hand(False, True, smoothed)
    got = p_values(context(pair, False, True, smoothed, mutant=True))
    wrong = [i for i, (a, b) in enumerate(zip(got, expected)) if abs(a - b) > 1e-9]
    assert len(wrong) >= 4, (got, expected)
    if not smoothed:  # 5.0 above both earlier scores of turn 1: by hand 1/3, the mutant (1 + 1)/4
        assert (expected[6], got[6]) == (1 / 3, 2 / 4)


def test_verdicts_carry_the_decision_at_the_fixed_levels(pair):
    ctx = context(pair, False, True, False)
    for (score, turn, question, attempt), p in zip(SEQUENCE, by_hand(False, True, False)):
        verdict = ctx.test(score, turn, question, attempt)
        assert (verdict.levels.takeover, verdict.levels.resample) == (0.2, 0.4)
        assert verdict.decision == ("takeover" if p <= 0.2 else "resample" if p <= 0.4 else "accept")


def test_a_real_run_records_the_online_p_values(tiny_target):
    """End to end: one sample (its tests in step order), an unsmoothed online calibrator: every
    recorded p-value is recomputed from the recorded scores before it in its stratum."""
    llm = a1.LLM(tiny_target, kv_cache_gb=0.02)
    calibrator = Calibrator((1, 2), by_attempt=True)
    result = a1_ext.generate(["Count: 1 2 3"], target=llm, num_samples=1, max_tokens=80, step_tokens=4, max_turns=12,
                             alpha=0.2, alpha_resample=0.5, turn_edges=(1, 2), calibration=calibrator,
                             calibration_update=True, warmup="coin", progress=False)[0]
    seen: dict = {}
    tested = [s for s in result.samples[0].steps if s.tested]
    assert len(tested) >= 5
    for step in tested:
        earlier = seen.setdefault(step.stratum, [])
        assert step.p_value == (1 + sum(s >= step.score for s in earlier)) / (len(earlier) + 1)
        earlier.append(step.score)
