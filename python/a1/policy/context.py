"""What every sample of a run shares: the engines, the settings, the calibrator and the seeds."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from a1.calibration import AdaptiveLevels, Calibrator, Levels
from a1.engine.interface import EnginePair

from .config import PolicyConfig
from .decide import DecisionRule
from .results import StepRecord
from .step_test import StepTester, Verdict, bucket_name  # noqa: F401 (Verdict: RunContext.test's result)


@dataclass
class Step:
    """One step in flight: its tokens and what the test made of it."""

    turn: int
    attempt: int
    token_ids: list[int]
    stop_reason: object  # the engine's: a stop string, a token id (EOS) or None (length)
    logprobs: Optional[list[float]]  # raw log-probs from the generation (self mode's score)
    decision: str = ""
    score: Optional[float] = None
    p_value: Optional[float] = None
    stratum: Optional[str] = None
    in_warmup: bool = False
    levels: Optional[Levels] = None  # the working levels the decision used
    kept: bool = True
    record: Optional[StepRecord] = None

    def eos(self, eos_ids: set[int]) -> bool:
        return isinstance(self.stop_reason, int) and self.stop_reason in eos_ids


def step_score(token_logprobs: Sequence[float], kind: str) -> float:
    """The step's nonconformity score from the target's log-prob of every step token (its first
    token included): "ppl" exp(mean NLL), "mean_nll", "max_nll". Higher is less plausible. A step
    with no log-probs has no score: an error, never a perplexity of 0 (which would auto-accept)."""
    if not token_logprobs:
        raise ValueError("a step with no token log-probs cannot be scored")
    nll = [-float(x) for x in token_logprobs]
    if any(math.isnan(x) for x in nll):
        raise ValueError("a step's token log-probs hold NaN")
    if kind == "max_nll":
        return max(nll)
    mean = sum(nll) / len(nll)
    if kind == "mean_nll":
        return mean
    if kind == "ppl":
        return math.exp(mean) if mean < 700 else math.inf
    raise ValueError(f"score must be 'ppl', 'mean_nll' or 'max_nll', got {kind!r}")


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from ints (splitmix64 steps): a sample's draws do not depend on the others."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return x >> 1


_ROLE_SEED = {"draft": 1, "target": 2}


class RunContext:
    def __init__(
        self,
        pair: EnginePair,
        cfg: PolicyConfig,
        calibrator: Optional[Calibrator],
        update_calibration: bool,
        question_keys: Sequence[object],
        on_step: Optional[Callable[[object, Step], None]] = None,
        levels: Optional[AdaptiveLevels] = None,
        prior: Optional[Calibrator] = None,
    ) -> None:
        self.pair, self.cfg, self.calibrator = pair, cfg, calibrator
        self.update_calibration = update_calibration
        self.question_keys = list(question_keys)
        self.self_mode = pair.self_mode
        self.tokenizer = pair.target.tokenizer
        self.eos_ids = set(pair.target.eos_token_ids)
        self.max_model_len = pair.max_model_len
        self._on_step = on_step
        self.warm_scores = 0
        self.decide = DecisionRule(cfg.alpha, cfg.alpha_resample)  # the levels, checked once
        # the conformal test of the steps (step_test.py); None in the modes that test nothing
        self.tester = (StepTester(cfg, calibrator, update_calibration, self.question_keys, levels, prior)
                       if calibrator is not None else None)
        self.speculative = None  # the target's steps by lossless speculative decoding, the draft proposing
        if cfg.speculative_tokens and cfg.mode != "draft_only":
            if self.self_mode:
                raise ValueError(
                    "speculative_tokens needs a separate draft model: in self mode the target would propose to itself"
                )
            from a1.engine.speculative import SpeculativeDecoder

            self.speculative = SpeculativeDecoder(pair, cfg.speculative_tokens)
        if cfg.mode == "draft_only":
            self.roles: tuple[str, ...] = ("draft",)
        elif cfg.mode == "target_only" or self.self_mode:
            self.roles = ("target",)
        else:
            self.roles = ("target", "draft")

    def engine(self, role: str):
        return self.pair.target if role == "target" else self.pair.draft

    def step_score(self, token_logprobs: Sequence[float]) -> float:
        return step_score(token_logprobs, self.cfg.score)

    def stratum(self, turn: int, question: int, attempt: int = 0) -> str:
        """The name of the step's stratum (str of the calibrator's key)."""
        if self.tester is None:
            return bucket_name(self.cfg.turn_edges, turn)
        return self.tester.stratum(turn, question, attempt)

    def test(self, score: float, turn: int, question: int, attempt: int = 0) -> Verdict:
        """The policy's test path (StepTester.test): the step's p-value against the earlier scores
        of its stratum, its decision at the stratum's working levels, then the adaptive level's
        update and (online) the score joins the stratum: each p-value uses only scores that came
        before it."""
        return self.tester.test(score, turn, question, attempt)

    def seed_calibration(self, score: float, question: int) -> None:
        """A warm-start score joins the first turn's stratum (not a test: no p-value, no decision)."""
        self.tester.seed(score, question)
        self.warm_scores += 1

    def seed_for(self, question: int, sample: int, turn: int, attempt: int, role: str, part: int = 0) -> int:
        """The seed of one request; part > 0 numbers the later requests of one step (the paper's
        continuation) without changing the seeds of the first ones."""
        key = self.question_keys[question]
        key_int = key if isinstance(key, int) else mix_seed(*str(key).encode())
        parts = (self.cfg.seed, key_int, sample, turn, attempt, _ROLE_SEED.get(role, 3)) + ((part,) if part else ())
        return mix_seed(*parts)

    def on_step(self, sample, step: Step) -> None:
        if self._on_step is not None:
            self._on_step(sample, step)
