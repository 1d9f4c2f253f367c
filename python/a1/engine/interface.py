"""The surface the A1 policy uses, as typing.Protocols: what one model's engine, a draft/target
pair and a front (a1.LLM, a1.remote.RemoteLLM) must offer. The embedded engine (LLMEngine,
PairEngine, a1.LLM) and the remote one (RemoteBackend, RemoteLLM) implement them; a test checks
both against these definitions, signatures included, so the policy needs no hasattr probing.
"""
from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence, runtime_checkable

from .sampling_params import SamplingParams


@runtime_checkable
class ModelEngine(Protocol):
    """One model's sequences and tasks. Sequence ids are per engine; a task's output comes out of
    step() (a RequestOutput for add_request, a ScoreResult for submit_score)."""

    vocab_size: int
    max_model_len: int
    eos_token_ids: list[int]
    tokenizer: Any

    def add_sequence(self, token_ids: list[int]) -> int: ...

    def add_request(self, prompt_token_ids: Optional[list[int]] = None, params: Optional[SamplingParams] = None, *,
                    seq_id: Optional[int] = None, release: Optional[bool] = None, commit: bool = True) -> int: ...

    def submit_score(self, seq_id: int, token_ids: list[int], keep: bool = True, temperature: float = 1.0,
                     commit: Optional[bool] = None) -> None: ...

    def append(self, seq_id: int, token_ids: list[int], commit: bool = True) -> None: ...

    def commit(self, seq_id: int) -> None: ...

    def truncate(self, seq_id: int, num_tokens: int) -> None: ...

    def fork(self, seq_id: int) -> int: ...

    def free(self, seq_id: int) -> None: ...

    def abort(self, seq_id: int) -> None: ...

    def is_live(self, seq_id: int) -> bool: ...

    def num_tokens(self, seq_id: int) -> int: ...

    def token_ids(self, seq_id: int) -> list[int]: ...

    def has_unfinished(self) -> bool: ...

    def step(self) -> list: ...


@runtime_checkable
class EnginePair(Protocol):
    """A target and a draft engine (the same one in self mode) stepped together."""

    target: ModelEngine
    draft: ModelEngine
    target_name: str
    draft_name: str

    @property
    def self_mode(self) -> bool: ...

    @property
    def max_model_len(self) -> int: ...

    @property
    def engines(self) -> tuple: ...

    def step(self) -> list: ...

    def has_unfinished(self) -> bool: ...

    def num_used_blocks(self) -> dict[str, int]: ...


@runtime_checkable
class PolicyBackend(Protocol):
    """What a1_ext.generate takes as `target`: a pair, its tokenizer, prompt encoding, metrics."""

    pair: EnginePair
    tokenizer: Any

    @property
    def self_mode(self) -> bool: ...

    def encode(self, prompts: Sequence, chat: bool = False) -> list[tuple[Optional[str], list[int]]]: ...

    def get_metrics(self) -> dict: ...
