"""The conformal test of one drafted step, apart from the engines: the policy's test path
(RunContext.test delegates here) and what simulations feed synthetic score streams through.

Order, for each tested score: its p-value against the scores of its stratum that came BEFORE it,
its decision at the stratum's working levels, the adaptive level's update, and only then (online)
the score joins its stratum. A score never counts itself.

Warm-up: while the stratum holds fewer than `warmup` scores (default ceil(1/alpha) - 1, the fewest
with which a score can be rejected on its own rank) the warm-up rule (cfg.warmup) decides:
    pooled  the p-value against the stratum's pool (its turn bucket over all questions and
            attempts: Calibrator.pooled_p_value) once the pool holds `warmup` scores, else coin;
    prior   the p-value against a prior calibrator (a calibration file's scores of the bucket);
    accept  accept (no rejection at all until the stratum is filled);
    coin    the stratum's own smoothed p-value, with which only the coin U can reject.

Adaptive levels (cfg.level == "adaptive") are kept per stratum, except that per-question strata
share their bucket's level (strata.level_key): a question sees too few tests for its own to move.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Optional, Sequence

from a1.calibration import AdaptiveLevels, Calibrator, Levels, decide_at
from a1.calibration.strata import level_key

from .config import PolicyConfig


@dataclass(frozen=True)
class Verdict:
    """What the test made of one score: its p-value, whether its stratum was in warm-up, the
    decision and the working levels it was decided at."""

    p_value: float
    in_warmup: bool
    decision: str
    levels: Levels


class StepTester:
    """p-values, decisions and online updates of one run's tests (see the module doc).

    question_keys[i] is the id of question i (per-question strata key by it); levels: the
    adaptive levels to continue from (default: fresh at alpha when cfg.level == "adaptive");
    prior: the calibrator of warmup="prior"."""

    def __init__(self, cfg: PolicyConfig, calibrator: Calibrator, update: bool, question_keys: Sequence[object],
                 levels: Optional[AdaptiveLevels] = None, prior: Optional[Calibrator] = None) -> None:
        self.cfg, self.calibrator, self.update = cfg, calibrator, update
        self.question_keys = list(question_keys)
        self.fixed_levels = Levels(cfg.alpha, cfg.alpha_resample)
        if cfg.level == "adaptive" and levels is None:
            levels = AdaptiveLevels(cfg.alpha, cfg.alpha_resample, cfg.level_gamma)
        self.levels = levels if cfg.level == "adaptive" else None
        if cfg.warmup == "prior" and prior is None:
            raise ValueError("warmup_prior: warmup='prior' needs a prior calibrator (a calibration file)")
        self.prior = prior
        self.warmup = cfg.warmup_scores or calibrator.warmup(cfg.alpha)

    def _question(self, question: int):
        return self.question_keys[question] if self.calibrator.settings.per_question else None

    def stratum(self, turn: int, question: int, attempt: int = 0) -> str:
        """The name of the stratum of (turn, question index, attempt): str of the calibrator's key."""
        return str(self.calibrator.stratum(turn=turn, question=self._question(question), attempt=attempt))

    def test(self, score: float, turn: int, question: int, attempt: int = 0) -> Verdict:
        """One score's verdict, then the updates (module doc)."""
        cal, rule = self.calibrator, self.cfg.warmup
        where = dict(turn=turn, question=self._question(question), attempt=attempt)
        warm = cal.n(**where) < self.warmup
        if warm and rule == "pooled" and cal.pool_size(**where) >= self.warmup:
            p = cal.pooled_p_value(score, **where)
        elif warm and rule == "prior":
            p = self.prior.pooled_p_value(score, turn=turn, question=self.question_keys[question], attempt=attempt)
        else:
            p = cal.p_value(score, **where)
        key = level_key(cal.stratum(**where), cal.settings.per_question)  # per question: the bucket's level
        levels = self.levels.level(key) if self.levels is not None else self.fixed_levels
        decision = "accept" if warm and rule == "accept" else decide_at(p, levels)
        if self.levels is not None:  # every test counts, warm-up ones too: the long-run rate is over all
            self.levels.record(key, decision)
        if self.update:
            cal.update(score, **where)
        return Verdict(p, warm, decision, levels)

    def seed(self, score: float, question: int) -> None:
        """A warm-start score joins the first turn's stratum (not a test: no p-value, no decision)."""
        self.calibrator.update(score, turn=0, question=self._question(question))


def bucket_name(turn_edges: Sequence[int], turn: int) -> str:
    """The stratum name of a turn without a calibrator (sync mode's records)."""
    return str(bisect_right(turn_edges, turn))
