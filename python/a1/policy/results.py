"""What a1_ext.generate returns: per prompt an A1Result with its samples and every step decision."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

DECISIONS = ("accept", "resample", "takeover", "forced")


@dataclass
class StepRecord:
    """One attempt at a step, or text the policy inserted. turn: the step's index in the sample;
    attempt: 0 for the first draft, then redrafts; the target's rewrite after a takeover comes
    after them. score/p_value: None when the step was not tested (target writing, forced text,
    draft_only/target_only modes, or sync mode's ranking, which has no p-value). kept: whether the
    step's tokens stayed in the sample (a rejected attempt's did not). level/resample_level: the
    working levels a tested step was decided at (None when not tested): p <= level takes over,
    p <= resample_level redrafts; fixed at α/α_resample, or moving with calibration="adaptive"."""

    turn: int
    attempt: int
    stratum: Optional[str]
    score: Optional[float]
    p_value: Optional[float]
    decision: str
    num_tokens: int
    by: str  # "draft" | "target"
    kept: bool = True
    in_warmup: bool = False  # tested while its stratum was in warm-up (the warm-up rule decided)
    level: Optional[float] = None  # the working takeover level of the decision (α, or adaptive α_t)
    resample_level: Optional[float] = None  # the three-way rule's working rejection level

    @property
    def tested(self) -> bool:
        return self.decision != "forced" and self.score is not None and (self.by == "draft")


@dataclass
class SampleResult:
    """One of the N samples of a prompt. token_ids: everything after the prompt (drafted,
    target-written and forced tokens); draft_tokens + target_tokens + forced_tokens = len(token_ids)."""

    index: int
    text: str
    token_ids: list[int]
    answer: Optional[str]
    finish_reason: str  # "answer" | "eos" (the model ended; an answer was forced if it gave none) | "max_tokens" | "max_turns"
    draft_tokens: int = 0
    target_tokens: int = 0
    forced_tokens: int = 0
    discarded_tokens: int = 0  # drafted in attempts that were rolled back
    score_tokens: int = 0  # tokens the target prefilled to score draft steps
    latency: float = 0.0  # seconds from the prompt's start to this sample's end
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def num_turns(self) -> int:
        return 1 + max((s.turn for s in self.steps), default=-1)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class A1Result:
    """answer: the majority vote over the samples' boxed answers (math-equivalence classes);
    None when no sample answered. stats: rejection rate per stratum against α with a 95%
    Clopper-Pearson interval, takeovers per turn (expected α·N vs actual), token counts, wall time."""

    prompt: object
    answer: Optional[str]
    samples: list[SampleResult]
    stats: dict

    @property
    def answers(self) -> list[Optional[str]]:
        return [s.answer for s in self.samples]
