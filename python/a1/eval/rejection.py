"""The "rejection" section of an evaluation's metrics: how often tested steps were rejected, per
stratum, per attempt and overall, against the level, with three intervals side by side.

- Clopper-Pearson: exact for independent tests. A run's tests are not independent: the steps of
  one question share its difficulty, so its run-to-run spread is wider than the binomial one and
  this interval undercovers (docs/statistics.md has the simulation).
- question-clustered: the cluster-robust (CR1, t on G - 1 df) interval and the cluster bootstrap
  (2,000 resamples of the questions, seeded), which treat the question as the unit of replication
  (a1.calibration.clustered). None with fewer than 2 questions.
Each entry also has the warm-up count and share (tests decided by the warm-up rule) and the mean
working level of its tests (alpha with a fixed level; what the adaptive level had to be).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from a1.calibration import clopper_pearson
from a1.calibration.clustered import clustered_summary

REJECTED = ("resample", "takeover")


@dataclass
class Counts:
    """One group's tests: rejections, tests, warm-up tests, [rejected, tested] per question, and
    the sum and count of the working levels recorded."""

    rejected: int = 0
    tested: int = 0
    warmup: int = 0
    questions: dict = field(default_factory=dict)
    level_sum: float = 0.0
    levels: int = 0

    def add(self, question: Any, rejected: bool, warmup: bool, level: Optional[float]) -> None:
        self.rejected += rejected
        self.tested += 1
        self.warmup += warmup
        pair = self.questions.setdefault(question, [0, 0])
        pair[0] += rejected
        pair[1] += 1
        if isinstance(level, (int, float)) and not isinstance(level, bool):
            self.level_sum += float(level)
            self.levels += 1


def interval(c: Counts, confidence: float, alpha: Optional[float]) -> dict:
    """tested, rejected, warmup, warmup_share, rate, the Clopper-Pearson interval (ci_low, ci_high),
    the question-clustered ones (questions, ci_cluster_low/high, ci_bootstrap_low/high), level_mean
    and, with alpha, whether alpha lies in the Clopper-Pearson and in the clustered interval."""
    out: dict = {"tested": c.tested, "rejected": c.rejected, "warmup": c.warmup,
                 "warmup_share": c.warmup / c.tested if c.tested else None, "rate": None,
                 "ci_low": None, "ci_high": None}
    if c.tested:
        low, high = clopper_pearson(c.rejected, c.tested, confidence)
        out.update(rate=c.rejected / c.tested, ci_low=low, ci_high=high)
    clustered = clustered_summary(c.questions, confidence)
    cr, boot = clustered["ci_cluster"], clustered["ci_bootstrap"]
    out.update(questions=clustered["clusters"],
               ci_cluster_low=cr[0] if cr else None, ci_cluster_high=cr[1] if cr else None,
               ci_bootstrap_low=boot[0] if boot else None, ci_bootstrap_high=boot[1] if boot else None,
               level_mean=c.level_sum / c.levels if c.levels else None)
    if alpha is not None:
        out["alpha_in_ci"] = None if not c.tested else bool(out["ci_low"] <= alpha <= out["ci_high"])
        out["alpha_in_ci_cluster"] = None if cr is None else bool(cr[0] <= alpha <= cr[1])
    return out


def stratum_order(name: str) -> tuple:
    """Numeric strata ("0", "1", "10") in numeric order, named ones after them."""
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def rejection_section(tested_steps: Iterable[tuple[Any, dict]], confidence: float, alpha: Optional[float]) -> dict:
    """{"confidence", "alpha", "overall", "by_stratum", "by_attempt"} over (question id, step) pairs
    of tested steps with a p-value: "resample" and "takeover" count as rejected."""
    overall, strata, attempts = Counts(), {}, {}
    for question, step in tested_steps:
        rejected = step.get("decision") in REJECTED
        warmup = bool(step.get("in_warmup", False))
        level = step.get("level")
        for counts in (overall, strata.setdefault(str(step.get("stratum")), Counts()),
                       attempts.setdefault(str(step.get("attempt", 0)), Counts())):
            counts.add(question, rejected, warmup, level)
    return {
        "confidence": confidence,
        "alpha": alpha,
        "overall": interval(overall, confidence, alpha),
        "by_stratum": {k: interval(strata[k], confidence, alpha) for k in sorted(strata, key=stratum_order)},
        "by_attempt": {k: interval(attempts[k], confidence, alpha) for k in sorted(attempts, key=int)},
    }
