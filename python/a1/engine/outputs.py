"""What the engine hands back: RequestOutput (shaped like vLLM's) and ScoreResult."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union

from .metrics import RequestMetrics


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    logprobs: Optional[list[float]]  # raw log-prob of each generated token, when requested
    finish_reason: Optional[str]  # 'stop' | 'length' | 'error'
    stop_reason: Union[str, int, None] = None  # the stop string or stop token id that ended it


@dataclass
class RequestOutput:
    """One finished generation. For a released (one-shot) request prompt_token_ids holds the
    history it continued; for a kept sequence (release=False) it is None and num_prompt_tokens
    gives the history's length: LLMEngine.token_ids(request_id) returns the tokens when needed.

    A request whose step failed (the forward raised, its logits were NaN, ...) comes out as a
    RequestOutput with finish_reason 'error', no tokens and the exception in `error`; its sequence
    is gone (aborted: blocks freed, is_live() False) while the engine serves the others."""

    request_id: int  # the sequence id (usable with fork/truncate/score while the sequence is kept)
    prompt: Optional[str]
    prompt_token_ids: Optional[list[int]]
    outputs: list[CompletionOutput]
    finished: bool = True
    metrics: RequestMetrics = field(default_factory=RequestMetrics)
    num_prompt_tokens: int = 0
    error: Optional[BaseException] = None  # set iff the request failed (finish_reason 'error')

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def token_ids(self) -> list[int]:
        return self.outputs[0].token_ids

    @property
    def text(self) -> str:
        return self.outputs[0].text

    @property
    def logprobs(self) -> Optional[list[float]]:
        return self.outputs[0].logprobs

    @property
    def finish_reason(self) -> Optional[str]:
        return self.outputs[0].finish_reason


@dataclass
class ScoreResult:
    """Log-probs of scored tokens given the sequence's history, and their mean negative log-prob
    (NaN for an empty step). perplexity = exp(step_nll). A failed score (its step raised or gave
    non-finite values) has no log-probs, step_nll NaN and the exception in `error`; its sequence
    is gone (aborted) while the engine serves the others."""

    seq_id: int
    token_logprobs: list[float]
    step_nll: float
    error: Optional[BaseException] = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def num_tokens(self) -> int:
        return len(self.token_logprobs)

    @property
    def perplexity(self) -> float:
        return math.exp(self.step_nll)

    @property
    def max_nll(self) -> float:
        return -min(self.token_logprobs) if self.token_logprobs else math.nan


class RequestFailed(RuntimeError):
    """Raised by the blocking fronts (LLM.generate / LLM.score, LLMEngine.score, AsyncEngine futures)
    for requests whose step failed; the engine itself stays usable. failures: (request or sequence
    id, the exception) pairs; the first exception is also the __cause__. outputs: what the call
    produced (None where a request failed), for LLM.generate / LLM.score."""

    def __init__(self, what: str, failures: list[tuple[int, BaseException]], outputs: Optional[list] = None) -> None:
        details = "; ".join(f"{seq_id}: {type(err).__name__}: {err}" for seq_id, err in failures)
        super().__init__(f"{what} failed ({details})")
        self.failures, self.outputs = failures, outputs
        if failures:
            self.__cause__ = failures[0][1]
