"""Per-prompt statistics of an A1 run: rejection rate per stratum against α, takeovers per turn
(the budget view: E[takeovers per turn] = α·N), token counts; and the vote over the samples."""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

from a1.calibration import RejectionTally
from a1.answers.vote import majority_vote

from .config import PolicyConfig
from .results import SampleResult, StepRecord


def vote(samples: Sequence[SampleResult]) -> Optional[str]:
    """Majority vote over the samples' boxed answers, grouped by math equivalence."""
    return majority_vote([s.answer for s in samples])


def question_stats(samples: Sequence[SampleResult], run, cfg: PolicyConfig) -> dict:
    """stats of one prompt: "strata" (tested, rejected, alpha, rate, 95% Clopper-Pearson ci,
    warmup, warmup_share, level_mean, and the intervals clustered by sample: within one question the
    samples are the independent units, a sample's steps share its prefix), "attempts" (per attempt:
    tested, rejected, takeovers), "turns" (tested first drafts, takeovers, expected α·tested), the
    takeover rate over tested steps, token counts and times. A tested step is a drafted attempt that
    got a score. The run's rates clustered by question are stats["run_rejection"] (run_rejection)."""
    tally = RejectionTally(cfg.alpha)
    turns: dict[int, dict] = {}
    takeovers = 0
    for sample in samples:
        for step in sample.steps:
            if not step.tested:
                continue
            tally.record(step.stratum, step.decision != "accept", step.in_warmup, cluster=sample.index,
                         level=step.level)
            takeovers += step.decision == "takeover"
            if step.attempt == 0:
                turn = turns.setdefault(step.turn, {"tested": 0, "takeovers": 0, "expected": 0.0})
                turn["tested"] += 1
                turn["expected"] += cfg.alpha
            if step.decision == "takeover":
                turns.setdefault(step.turn, {"tested": 0, "takeovers": 0, "expected": 0.0})["takeovers"] += 1
    stats = tally.as_dict()
    stats.update(
        attempts=attempt_counts(step for sample in samples for step in sample.steps),
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


def attempt_counts(steps: Iterable[StepRecord]) -> dict:
    """Per attempt (0: first drafts, then redrafts): tested, rejected (resample or takeover) and
    takeovers, with their rates: what the three-way rule controls per attempt."""
    out: dict[int, dict] = {}
    for step in steps:
        if step.tested:
            entry = out.setdefault(step.attempt, {"tested": 0, "rejected": 0, "takeovers": 0})
            entry["tested"] += 1
            entry["rejected"] += step.decision != "accept"
            entry["takeovers"] += step.decision == "takeover"
    for entry in out.values():
        entry["rate"] = entry["rejected"] / entry["tested"]
        entry["takeover_rate"] = entry["takeovers"] / entry["tested"]
    return {a: out[a] for a in sorted(out)}


def run_rejection(results: Sequence, question_keys: Sequence, cfg: PolicyConfig) -> dict:
    """The call's rejection rate over all its prompts, per stratum and overall, with Clopper-Pearson
    and the question-clustered intervals (cluster-robust and cluster bootstrap: a question's steps
    share its difficulty, so they are not independent tests), and per attempt."""
    tally = RejectionTally(cfg.alpha)
    for result, key in zip(results, question_keys):
        for sample in result.samples:
            for step in sample.steps:
                if step.tested and step.p_value is not None:
                    tally.record(step.stratum, step.decision != "accept", step.in_warmup, cluster=key,
                                 level=step.level)
    report = tally.as_dict()
    report["attempts"] = attempt_counts(step for r in results for sample in r.samples for step in sample.steps)
    return report
