"""What a sequence can be asked to do, each task with its own behaviour: which of the step's rows
it needs (plan_rows: a sampled row, scored rows, verified rows), what a sampled token does to it,
when it is finished, and the output it finishes (or fails) with. The engine's step and the model
runner call these; neither dispatches on the task's type.

Feeding: a generation feeds the pending tokens and samples from the last row; scoring t1..tk
feeds [pending, t1..t(k-1)], whose k rows predict t1..tk, and leaves tk pending. Speculative
decoding (speculative.py) runs a DraftTask on the draft's sequence (k proposals, sampled like
generation, uncommitted) and a VerifyTask on the target's (feeds [pending, d1..dk]: k + 1 rows).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Protocol, Union

import torch

from .detokenizer import check_stop_strings, decode_new_text
from .metrics import RequestMetrics
from .outputs import CompletionOutput, RequestOutput, ScoreResult
from .sampling_params import SamplingParams
from .sequence import Sequence

if TYPE_CHECKING:
    from .llm_engine import LLMEngine


def as_int64(seed: int) -> int:
    """Any int as the signed 64-bit value with the same low 64 bits (the kernels read uint64)."""
    seed &= (1 << 64) - 1
    return seed - (1 << 64) if seed >= 1 << 63 else seed


class RowPlan(Protocol):
    """The step's rows, as the model runner collects them from the tasks."""

    def sample(self, row: int, seq: Sequence) -> None: ...

    def score(self, temperature: float, rows: range, targets: list[int], seq: Sequence) -> None: ...

    def verify(self, rows: range, seq: Sequence) -> None: ...


class StopRules(Protocol):
    """What a generation's stop rules need from its engine."""

    tokenizer: object
    eos_token_ids: list[int]
    max_model_len: int


class SampledTask:
    """What a generation and a draft proposal share: they feed every pending token and sample
    from the last row; nothing to undo on preemption (their tokens are in token_ids)."""

    def feed_end(self, num_tokens: int) -> int:
        return num_tokens

    def prefix_cap(self, num_tokens: int) -> int:
        return num_tokens - 1

    def reset_progress(self) -> None:
        """Nothing to undo: sampled tokens are in token_ids and are recomputed."""

    def plan_rows(self, plan: RowPlan, seq: Sequence, start: int, end: int, row0: int) -> None:
        if end == len(seq.token_ids):
            plan.sample(row0 + end - start - 1, seq)


@dataclass
class GenerateTask(SampledTask):
    """Sample tokens after the history until a stop condition."""

    params: SamplingParams
    seed: int  # params.seed, or one drawn from the engine's seed
    start: int  # history length when the task began: the output is token_ids[start:]
    release: bool  # free the sequence when done (one-shot requests)
    commit: bool  # generated tokens may enter the prefix cache (False for unverified drafts)
    metrics: RequestMetrics
    num_sampled: int = 0  # Philox offset: the i-th sampled token uses offset i, across preemptions
    logprobs: list[float] = field(default_factory=list)
    text: str = ""  # decoded output so far (incremental only when stop strings are set)
    prefix_offset: int = 0  # incremental detokenizer window
    read_offset: int = 0
    finish_reason: Optional[str] = None
    stop_reason: Union[str, int, None] = None
    want_probs = False  # no q rows (DraftTask's)

    def on_scheduled(self, seq: Sequence, now: float) -> None:
        if self.metrics.first_scheduled_time is None:
            self.metrics.first_scheduled_time = now
            self.metrics.num_cached_tokens = seq.num_computed_tokens  # prompt tokens not recomputed

    def take_token(self, rules: StopRules, seq: Sequence, token: int, logprob: Optional[float],
                   probs: Optional[torch.Tensor] = None) -> None:
        """Append a sampled token under the stop rules: stop strings (from min_tokens on), stop
        ids, EOS (unless ignore_eos), max_tokens and max_model_len set finish_reason."""
        params = self.params
        if self.num_sampled == 0:
            self.metrics.first_token_time = time.perf_counter()
        seq.append_tokens([token], self.commit)
        self.num_sampled += 1
        if params.logprobs:
            self.logprobs.append(logprob)
        num_generated = len(seq) - self.start
        can_stop = num_generated >= params.min_tokens
        if params.stop:
            new_text = decode_new_text(rules.tokenizer, seq)
            if not can_stop:  # stop strings count only from min_tokens on
                self.text += new_text
            elif (stop := check_stop_strings(self, new_text)) is not None:
                self.finish_reason, self.stop_reason = "stop", stop
                return
        if can_stop and token in params.stop_token_ids:
            self.finish_reason, self.stop_reason = "stop", token
        elif can_stop and not params.ignore_eos and token in rules.eos_token_ids:
            self.finish_reason, self.stop_reason = "stop", token
        elif num_generated >= params.max_tokens or len(seq) >= rules.max_model_len:
            self.finish_reason = "length"

    def is_finished(self, seq: Sequence) -> bool:
        return self.finish_reason is not None

    def output(self, tokenizer, seq: Sequence) -> RequestOutput:
        """The finished generation as a RequestOutput (plain generation's and speculative
        decoding's), under the sequence's id. A kept sequence's history is not copied into it (a
        policy stepping a long trace would pay O(L^2)): num_prompt_tokens gives its length."""
        output_ids = seq.token_ids[self.start :]
        params = self.params
        if not params.stop or not isinstance(self.stop_reason, str):
            self.text = tokenizer.decode(output_ids, skip_special_tokens=params.skip_special_tokens)
        self.metrics.num_generated_tokens = len(output_ids)
        if self.metrics.finished_time is None:
            self.metrics.finished_time = time.perf_counter()
        completion = CompletionOutput(0, self.text, output_ids, list(self.logprobs) if params.logprobs else None,
                                      self.finish_reason, self.stop_reason)
        prompt_ids = seq.token_ids[: self.start] if self.release else None
        return RequestOutput(seq.seq_id, None, prompt_ids, [completion], True, self.metrics, self.start)

    def finish(self, engine: LLMEngine, seq: Sequence) -> RequestOutput:
        out = self.output(engine.tokenizer, seq)
        if self.release:
            engine.free(seq.seq_id)
        return out

    def failure(self, seq: Sequence, err: BaseException) -> RequestOutput:
        """The output of a failed generation: finish_reason 'error', no tokens, the exception."""
        self.metrics.finished_time = time.perf_counter()
        prompt_ids = seq.token_ids[: self.start] if self.release else None
        completion = CompletionOutput(0, "", [], [] if self.params.logprobs else None, "error", None)
        return RequestOutput(seq.seq_id, None, prompt_ids, [completion], True, self.metrics, self.start, err)


@dataclass
class ScoreTask:
    """Log-probs of token_ids[start:start+k] given the history token_ids[:start]."""

    start: int
    num_tokens: int
    keep: bool
    commit: bool  # with keep: the tokens may enter the prefix cache now (else after a later commit())
    temperature: float
    token_logprobs: list[float] = field(default_factory=list)
    nll_sum: float = 0.0  # sum over chunks of step_nll * rows

    def feed_end(self, num_tokens: int) -> int:
        return num_tokens - 1

    def prefix_cap(self, num_tokens: int) -> int:
        return self.start - 1  # the row of the last history token must be computed

    def reset_progress(self) -> None:
        self.token_logprobs.clear()
        self.nll_sum = 0.0

    def on_scheduled(self, seq: Sequence, now: float) -> None:
        pass

    def plan_rows(self, plan: RowPlan, seq: Sequence, start: int, end: int, row0: int) -> None:
        first = max(start, self.start - 1)  # rows at positions p predict token p + 1
        if first < end:
            plan.score(self.temperature, range(row0 + first - start, row0 + end - start),
                       seq.token_ids[first + 1 : end + 1], seq)

    def take_scores(self, token_logprobs: list[float], nll: float) -> None:
        self.token_logprobs.extend(token_logprobs)
        self.nll_sum += nll * len(token_logprobs)

    def is_finished(self, seq: Sequence) -> bool:
        return seq.num_computed_tokens == seq.feed_end

    def finish(self, engine: LLMEngine, seq: Sequence) -> ScoreResult:
        result = ScoreResult(seq.seq_id, list(self.token_logprobs), self.nll_sum / self.num_tokens)
        if not self.keep:
            engine.truncate(seq.seq_id, self.start)
        elif self.commit:
            engine.commit(seq.seq_id)
        return result

    def failure(self, seq: Sequence, err: BaseException) -> ScoreResult:
        return ScoreResult(seq.seq_id, [], math.nan, err)


@dataclass
class DraftTask(SampledTask):
    """Propose num_draft tokens after the history, sampled like a GenerateTask of the request
    (params, seed, Philox offsets from num_sampled on, min_tokens bans counted from start) but with
    no stop condition; the tokens are uncommitted. With want_probs, the full-vocabulary q row each
    proposal was drawn from is kept (the model runner computes it). Returned by step() when done."""

    seq_id: int
    params: SamplingParams
    seed: int
    start: int  # where the request's output starts (min_tokens counts from here)
    num_sampled: int  # Philox offset of the next proposal
    end: int  # history length once every proposal is made
    want_probs: bool
    probs: list[torch.Tensor] = field(default_factory=list)
    error: Optional[BaseException] = None  # set when its step failed (the sequence is then aborted)

    def on_scheduled(self, seq: Sequence, now: float) -> None:
        pass

    def take_token(self, rules: StopRules, seq: Sequence, token: int, logprob: Optional[float],
                   probs: Optional[torch.Tensor] = None) -> None:
        seq.append_tokens([token], commit=False)
        self.num_sampled += 1
        if self.want_probs:
            self.probs.append(probs)

    def is_finished(self, seq: Sequence) -> bool:
        return len(seq.token_ids) >= self.end

    def finish(self, engine: LLMEngine, seq: Sequence) -> "DraftTask":
        return self  # speculative.py reads the proposals off the task

    def failure(self, seq: Sequence, err: BaseException) -> "DraftTask":
        self.error = err
        return self


@dataclass
class VerifyTask:
    """Verify the drafts token_ids[history:] (appended uncommitted) in one target forward over
    [pending, drafts] with speculative_verify (seed, offset; draft_probs the drafts' q rows, None for
    a deterministic draft). result = (tokens: accepted drafts then the correction or bonus token,
    their raw target log-probs or None, number of drafts accepted). Returned by step() when done."""

    seq_id: int
    params: SamplingParams
    seed: int
    offset: int
    start: int  # where the request's output starts (min_tokens counts from here)
    history: int  # length before the drafts: the pending token is token_ids[history - 1]
    draft_probs: Optional[torch.Tensor]
    rows: list[torch.Tensor] = field(default_factory=list)  # target logits rows so far (chunked feeds)
    result: Optional[tuple[list[int], Optional[list[float]], int]] = None
    error: Optional[BaseException] = None  # set when its step failed (the sequence is then aborted)

    def feed_end(self, num_tokens: int) -> int:
        return num_tokens

    def prefix_cap(self, num_tokens: int) -> int:
        return self.history - 1  # the pending token's row is the first one verified

    def reset_progress(self) -> None:
        self.rows.clear()

    def on_scheduled(self, seq: Sequence, now: float) -> None:
        pass

    def plan_rows(self, plan: RowPlan, seq: Sequence, start: int, end: int, row0: int) -> None:
        first = max(start, self.history - 1)  # rows from the pending token's on are verified
        if first < end:
            plan.verify(range(row0 + first - start, row0 + end - start), seq)

    def is_finished(self, seq: Sequence) -> bool:
        return self.result is not None

    finish = DraftTask.finish  # speculative.py reads the verdict off the task
    failure = DraftTask.failure


Task = Union[GenerateTask, ScoreTask, DraftTask, VerifyTask]
