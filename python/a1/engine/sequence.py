"""A sequence: token history, its KV blocks and the task (generate or score) it is running.

Invariant: the last token of an idle sequence is *pending* (not in the KV cache). A generation
forward feeds the pending tokens and samples from the last row; scoring t1..tk feeds
[pending, t1..t(k-1)], whose k rows predict t1..tk, and leaves tk pending. Speculative decoding
(speculative.py) runs a DraftTask on the draft's sequence (k proposals, sampled like generation,
uncommitted) and a VerifyTask on the target's (feeds [pending, d1..dk]: k + 1 rows).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Union

import torch

from .metrics import RequestMetrics
from .sampling_params import SamplingParams


class SequenceStatus(enum.Enum):
    IDLE = "idle"  # no task; may hold KV blocks (evictable)
    WAITING = "waiting"  # has a task, holds no blocks
    RUNNING = "running"  # has a task and blocks


@dataclass
class GenerateTask:
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

    def feed_end(self, num_tokens: int) -> int:
        return num_tokens

    def prefix_cap(self, num_tokens: int) -> int:
        return num_tokens - 1

    def reset_progress(self) -> None:
        """Nothing to undo: generated tokens are in token_ids and are recomputed."""


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


@dataclass
class DraftTask:
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

    def feed_end(self, num_tokens: int) -> int:
        return num_tokens

    def prefix_cap(self, num_tokens: int) -> int:
        return num_tokens - 1

    def reset_progress(self) -> None:
        """Nothing to undo: proposals are in token_ids (and probs) and are recomputed."""

    def add(self, seq: "Sequence", token: int, probs: Optional[torch.Tensor]) -> None:
        seq.append_tokens([token], commit=False)
        self.num_sampled += 1
        if self.want_probs:
            self.probs.append(probs)

    def done(self, seq: "Sequence") -> bool:
        return len(seq.token_ids) >= self.end


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

    def done(self, seq: "Sequence") -> bool:
        return self.result is not None


Task = Union[GenerateTask, ScoreTask, DraftTask, VerifyTask]


class Sequence:
    """Token ids plus the engine's bookkeeping. block_table holds block ids; num_cached_blocks of
    them are registered in the prefix cache; block_hashes are the chained hashes of the full blocks
    of token_ids[:num_committed] (computed lazily by the block manager)."""

    __slots__ = (
        "seq_id", "token_ids", "num_computed_tokens", "num_committed", "block_table", "block_hashes",
        "num_cached_blocks", "status", "task",
    )

    def __init__(self, seq_id: int, token_ids: list[int]) -> None:
        if not token_ids:
            raise ValueError("token_ids must hold at least one token")
        self.seq_id = seq_id
        self.token_ids: list[int] = list(token_ids)
        self.num_computed_tokens = 0
        self.num_committed = len(self.token_ids)
        self.block_table: list[int] = []
        self.block_hashes: list[int] = []
        self.num_cached_blocks = 0
        self.status = SequenceStatus.IDLE
        self.task: Optional[Task] = None

    def __len__(self) -> int:
        return len(self.token_ids)

    def __repr__(self) -> str:
        return (
            f"Sequence(id={self.seq_id}, tokens={len(self.token_ids)}, computed={self.num_computed_tokens}, "
            f"committed={self.num_committed}, blocks={self.block_table}, status={self.status.value})"
        )

    @property
    def feed_end(self) -> int:
        """Tokens [num_computed_tokens, feed_end) still have to go through the model for the task."""
        assert self.task is not None
        return self.task.feed_end(len(self.token_ids))

    @property
    def num_to_feed(self) -> int:
        return self.feed_end - self.num_computed_tokens

    @property
    def prefix_cap(self) -> int:
        """At most this many leading tokens may come from the prefix cache."""
        if self.task is None:
            return len(self.token_ids) - 1
        return self.task.prefix_cap(len(self.token_ids))

    def append_tokens(self, token_ids: list[int], commit: bool) -> None:
        self.token_ids.extend(token_ids)
        if commit:
            self.num_committed = len(self.token_ids)

    def fork(self, seq_id: int) -> "Sequence":
        """A copy of the history and bookkeeping (blocks are shared by the block manager)."""
        child = Sequence(seq_id, self.token_ids)
        child.num_computed_tokens = self.num_computed_tokens
        child.num_committed = self.num_committed
        child.block_table = list(self.block_table)
        child.block_hashes = list(self.block_hashes)
        child.num_cached_blocks = self.num_cached_blocks
        return child
