"""Per-prompt statistics of an A1 run: rejection rate per stratum against α, takeovers per turn
(the budget view: E[takeovers per turn] = α·N), token counts; and the vote over the samples."""
from __future__ import annotations

from typing import Optional, Sequence

from a1.calibration import RejectionTally
from a1.eval.metrics import majority_vote

from .config import PolicyConfig
from .results import SampleResult


def vote(samples: Sequence[SampleResult]) -> Optional[str]:
    """Majority vote over the samples' boxed answers, grouped by math equivalence."""
    return majority_vote([s.answer for s in samples])


def question_stats(samples: Sequence[SampleResult], run, cfg: PolicyConfig) -> dict:
    """stats of one prompt: "strata" (tested, rejected, alpha, rate, 95% Clopper-Pearson ci,
    warmup), "turns" (tested first drafts, takeovers, expected α·tested), the takeover rate over
    tested steps, token counts and times. A tested step is a drafted attempt that got a score."""
    tally = RejectionTally(cfg.alpha)
    turns: dict[int, dict] = {}
    takeovers = 0
    for sample in samples:
        for step in sample.steps:
            if not step.tested:
                continue
            tally.record(step.stratum, step.decision != "accept", step.in_warmup)
            takeovers += step.decision == "takeover"
            if step.attempt == 0:
                turn = turns.setdefault(step.turn, {"tested": 0, "takeovers": 0, "expected": 0.0})
                turn["tested"] += 1
                turn["expected"] += cfg.alpha
            if step.decision == "takeover":
                turns.setdefault(step.turn, {"tested": 0, "takeovers": 0, "expected": 0.0})["takeovers"] += 1
    stats = tally.as_dict()
    stats.update(
        turns={t: turns[t] for t in sorted(turns)},
        takeover_rate=takeovers / tally.tested if tally.tested else None,
        draft_tokens=sum(s.draft_tokens for s in samples),
        target_tokens=sum(s.target_tokens for s in samples),
        forced_tokens=sum(s.forced_tokens for s in samples),
        discarded_tokens=sum(s.discarded_tokens for s in samples),
        score_tokens=sum(s.score_tokens for s in samples),
        wall_time=run.wall_time,
        barrier_wait=run.barrier_wait,
    )
    return stats
