"""PolicyConfig: the one definition of every setting of an A1 run (default, check, help text).

a1_ext.generate takes a PolicyConfig or overrides of its fields, a1 eval's settings hold one, and
the command line's policy flags are built from its fields (the flag is the field name with
dashes: --on-reject, --target-step-tokens, ...). Every check runs once, when it is constructed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from . import knobs
from .knobs import knob

MODES = ("async", "sync", "target_only", "draft_only", "reference")
SCORE_KINDS = ("ppl", "mean_nll", "max_nll")
ON_REJECT = ("rewrite", "append")
APPEND_UNTIL = ("tokens", "step")
LEVELS = ("fixed", "adaptive")
# one calibration stratum per turn (turns >= 31 share the last): scores drift from turn to turn, and
# a bucket of several turns over-rejects its later turns (docs/statistics.md, "Strata")
PER_TURN_EDGES = tuple(range(1, 32))
WARMUP_RULES = ("pooled", "coin", "accept", "prior")

# a1 eval --method: named pipelines, as policy field values (explicit fields override them)
PRESETS: dict[str, dict[str, Any]] = {
    "a1": {"mode": "async"},
    "sync": {"mode": "sync"},
    "target_only": {"mode": "target_only"},
    "draft_only": {"mode": "draft_only"},
    "reference": {"mode": "reference"},
    # the paper's pipeline (draft -> verify -> target continuation of K tokens after a kept rejected
    # step) with this project's exact conformal statistics
    "paper": {"mode": "async", "on_reject": "append", "append_until": "tokens"},
}


@dataclass
class PolicyConfig:
    """The settings of an A1 run; see each field's help (`a1 eval --help` prints them)."""

    alpha: float = knob(0.1, "takeover level α: the target takes over a fraction α of tested steps (also a budget: "
                        "E[takeovers per turn] = α·N)", knobs.level, knobs.parse_float)
    alpha_resample: Optional[float] = knob(
        None, "upper level of the three-way rule: p in (α, this] redrafts the step (none: two-way)",
        knobs.optional(knobs.level), knobs.parse_optional_float, metavar="LEVEL|none")
    max_resamples: int = knob(2, "redrafts of a step in the resample region before its best-scored attempt is kept",
                              knobs.int_at_least(0), knobs.parse_int)
    num_samples: int = knob(16, "samples per question, N", knobs.int_at_least(1), knobs.parse_int,
                            aliases=("--samples",))
    mode: str = knob("async", "async: a conformal test per sample; sync: a per-question barrier ranks the steps and "
                     "takes over a fraction α of them; target_only / draft_only: one model writes every step; "
                     "reference: the original authors' rule", knobs.one_of(MODES), choices=MODES)
    turn_edges: tuple[int, ...] = knob(PER_TURN_EDGES, "first turn of each calibration stratum after turn 0 "
                                       "(comma-separated; scores of different strata are never compared). Default: one "
                                       "stratum per turn up to 31 (measured: per-turn rejection error 0.004 against "
                                       "0.039 for the doubling buckets 1,2,4,8 at α = 0.2; docs/statistics.md)",
                                       knobs.turn_edges, knobs.parse_ints, metavar="T1,T2,...")
    step_tokens: int = knob(64, "most tokens of one drafted step; a step also ends at a blank line or EOS",
                            knobs.int_at_least(1), knobs.parse_int)
    max_turns: int = knob(32, "most steps of a sample before its answer is forced", knobs.int_at_least(1),
                          knobs.parse_int, aliases=("--turns",))
    max_tokens: int = knob(1024, "most reasoning tokens of a sample before its answer is forced",
                           knobs.int_at_least(1), knobs.parse_int)
    min_tokens: int = knob(0, "an answer before this many tokens is dropped and 'Wait,' appended (budget forcing)",
                           knobs.int_at_least(0), knobs.parse_int)
    temperature: float = knob(0.7, "sampling temperature of every step (0: greedy)", knobs.temperature,
                              knobs.parse_float)
    top_p: float = knob(0.95, "nucleus sampling: keep the likeliest tokens up to this mass", knobs.top_p,
                        knobs.parse_float)
    top_k: int = knob(0, "keep the k likeliest tokens (0: all)", knobs.int_at_least(0), knobs.parse_int)
    seed: int = knob(0, "seeds every sample (with its question id and index) and the question shuffle",
                     knobs.int_at_least(0), knobs.parse_int)
    score: str = knob("ppl", "nonconformity score of a step from the target's log-probs: ppl = exp(mean NLL), "
                      "mean_nll or max_nll", knobs.one_of(SCORE_KINDS), choices=SCORE_KINDS)
    on_reject: str = knob("rewrite", "rewrite: roll a rejected step back and let the target write it; append (the "
                          "paper's pipeline): keep it, the target continues after it", knobs.one_of(ON_REJECT),
                          choices=ON_REJECT)
    target_step_tokens: int = knob(64, "with on_reject=append: tokens the target writes after a rejected step (K_t)",
                                   knobs.int_at_least(1), knobs.parse_int)
    append_until: str = knob("tokens", "with on_reject=append, what ends the target's continuation early: tokens "
                             "(only EOS or a final answer: the paper's) or step (also the step's blank line)",
                             knobs.one_of(APPEND_UNTIL), choices=APPEND_UNTIL)
    speculative_tokens: int = knob(0, "k > 0: the target writes its steps by lossless speculative decoding, the "
                                   "draft proposing k tokens per round (a separate draft model only)",
                                   knobs.int_at_least(0), knobs.parse_int)
    answer_tokens: int = knob(32, "most tokens the target writes to close a forced '\\boxed{'",
                              knobs.int_at_least(1), knobs.parse_int)
    concurrency: int = knob(8, "questions in flight at once", knobs.int_at_least(1), knobs.parse_int)
    warm_start: int = knob(0, "first steps drafted and scored per question to seed an updated calibrator before "
                           "its samples start (the paper's memory bank)", knobs.int_at_least(0), knobs.parse_int)
    level: str = knob("fixed", "the working level of each stratum: fixed (reject iff p <= α) or adaptive (ACI: it "
                      "moves with the stratum's realized rejections, so that the long-run rate is α for any drift; "
                      "--calibration adaptive sets it)", knobs.one_of(LEVELS), choices=LEVELS)
    level_gamma: float = knob(0.01, "step size γ of the adaptive level: |rate − α| <= (1 + γ)/(γT) after T tests of "
                              "a stratum (0.01: within 0.005 at T = 20,000)", knobs.step_size, knobs.parse_float)
    attempt_strata: bool = knob(True, "three-way rule: each redraft attempt is calibrated against earlier redrafts "
                                "of that attempt, not against first drafts (true/false)", knobs.boolean,
                                knobs.parse_bool, metavar="BOOL")
    warmup: str = knob("pooled", "how a stratum with fewer than --warmup-scores scores decides: pooled (against the "
                       "run's pooled scores: the bucket over all questions, per question), coin (its smoothed "
                       "p-value: only the coin can reject), accept, or prior (against the scores of a calibration file: "
                       "--warmup-prior)",
                       knobs.one_of(WARMUP_RULES), choices=WARMUP_RULES)
    warmup_scores: Optional[int] = knob(None, "scores a stratum needs to leave warm-up (none: ⌈1/α⌉ − 1, the fewest "
                                        "with which a score can be rejected on its own rank)",
                                        knobs.optional(knobs.int_at_least(1)), knobs.parse_optional_int,
                                        metavar="M|none")
    step_stop: tuple[str, ...] = knob(("\n\n",), "strings that end a step (a JSON list, or one string with "
                                      "backslash escapes)", knobs.stop_strings, knobs.parse_strings,
                                      metavar="STRINGS")

    def __post_init__(self) -> None:
        for f in fields(self):  # each field's own check, the only one it gets
            setattr(self, f.name, f.metadata["check"](getattr(self, f.name), f.name))
        if self.alpha_resample is not None and self.alpha_resample < self.alpha:
            raise ValueError(f"alpha_resample ({self.alpha_resample}) must be >= alpha ({self.alpha})")
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})")
        if self.mode == "sync" and self.level == "adaptive":
            raise ValueError("level: sync mode ranks the steps at a barrier and has no p-values whose level could "
                             "adapt; use mode='async'")
        if self.mode == "sync" and self.alpha_resample is not None:
            raise ValueError("alpha_resample: sync mode ranks the steps at a barrier and has no p-values to "
                             "resample on; use mode='async' for the three-way rule")

    @classmethod
    def preset(cls, method: str, **overrides: Any) -> "PolicyConfig":
        """The settings of a named pipeline (PRESETS), with explicit overrides on top."""
        if method not in PRESETS:
            raise ValueError(f"method must be one of {tuple(PRESETS)}, got {method!r}")
        return cls.of({**PRESETS[method], **overrides})

    @classmethod
    def of(cls, values: dict[str, Any]) -> "PolicyConfig":
        """PolicyConfig(**values), naming an unknown field (with the known ones) instead of
        Python's bare "unexpected keyword argument"."""
        check_names(values)
        return cls(**values)

    def replace(self, **overrides: Any) -> "PolicyConfig":
        """A copy with some fields changed (checked again, like any construction)."""
        check_names(overrides)
        return dataclasses.replace(self, **overrides)

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


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PolicyConfig))


def check_names(values: dict[str, Any]) -> None:
    unknown = [name for name in values if name not in FIELDS]
    if unknown:
        raise TypeError(f"unknown policy setting(s) {unknown}; the settings are {list(FIELDS)}")
