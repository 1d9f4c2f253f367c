"""Settings of one A1 run: the decision levels, the step and budget settings, the mode."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

MODES = ("async", "sync", "target_only", "draft_only", "reference")
SCORE_KINDS = ("ppl", "mean_nll", "max_nll")
ON_REJECT = ("rewrite", "append")


@dataclass
class PolicyConfig:
    """alpha: takeover level α (also a budget: E[takeovers per turn] = α·N). alpha_resample: the
    upper level of the three-way rule (None: two-way). max_resamples: redrafts of a step in the
    resample region before the best-scored attempt is kept. step_tokens: most tokens of one step
    (a step also ends at "\\n\\n" or EOS). max_turns / max_tokens: the sample's budgets, after which
    the answer is forced; min_tokens: an earlier answer is suppressed and "Wait" appended.
    on_reject: "rewrite" (roll the step back, the target writes it) or "append" (the paper's
    pipeline: keep the draft step, the target continues after it for target_step_tokens).
    concurrency: questions in flight at once. warm_start: first steps drafted and scored per
    question to seed an online calibrator before its samples start (the paper's memory bank)."""

    alpha: float = 0.1
    alpha_resample: Optional[float] = None
    max_resamples: int = 2
    num_samples: int = 16
    mode: str = "async"
    turn_edges: tuple[int, ...] = (1, 2, 4, 8)
    step_tokens: int = 64
    max_turns: int = 32
    max_tokens: int = 1024
    min_tokens: int = 0
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 0
    seed: int = 0
    score: str = "ppl"
    on_reject: str = "rewrite"
    target_step_tokens: int = 64
    speculative_tokens: int = 0
    answer_tokens: int = 32
    concurrency: int = 8
    warm_start: int = 0
    step_stop: tuple[str, ...] = field(default=("\n\n",))

    def __post_init__(self) -> None:
        _check_level("alpha", self.alpha)
        if self.alpha_resample is not None:
            _check_level("alpha_resample", self.alpha_resample)
            if self.alpha_resample < self.alpha:
                raise ValueError(f"alpha_resample ({self.alpha_resample}) must be >= alpha ({self.alpha})")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.score not in SCORE_KINDS:
            raise ValueError(f"score must be one of {SCORE_KINDS}, got {self.score!r}")
        if self.on_reject not in ON_REJECT:
            raise ValueError(f"on_reject must be one of {ON_REJECT}, got {self.on_reject!r}")
        for name in ("num_samples", "step_tokens", "max_turns", "max_tokens", "target_step_tokens", "answer_tokens",
                     "concurrency"):
            _check_int(name, getattr(self, name), 1)
        for name in ("max_resamples", "min_tokens", "speculative_tokens", "top_k", "warm_start"):
            _check_int(name, getattr(self, name), 0)
        _check_int("seed", self.seed, None)
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})")
        if not isinstance(self.temperature, (int, float)) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        edges = tuple(self.turn_edges)
        if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in edges) or list(edges) != sorted(set(edges)):
            raise ValueError(f"turn_edges must be strictly increasing ints >= 0, got {self.turn_edges!r}")
        self.turn_edges = edges
        self.step_stop = tuple(self.step_stop)

    @property
    def tested(self) -> bool:
        """Whether steps are drafted and tested (the modes that write with one model only are not)."""
        return self.mode in ("async", "sync", "reference")

    @property
    def rule(self) -> str:
        return "reference" if self.mode == "reference" else "conformal"

    @property
    def keeps_rejected_draft(self) -> bool:
        """The paper's pipeline keeps a rejected step and lets the target continue after it."""
        return self.on_reject == "append" or self.mode == "reference"

    def as_dict(self) -> dict:
        return asdict(self)


def _check_level(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def _check_int(name: str, value, minimum: Optional[int]) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an int{bound}, got {value!r}")
