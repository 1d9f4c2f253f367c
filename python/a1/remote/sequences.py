"""The remote engine's sequences: token-id histories kept on the client, with LLMEngine's
bookkeeping (idle / busy, append, truncate, fork, free, abort). Nothing here talks to a server: a
rollback is a shorter list, sent with the next request."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from a1.engine.outputs import RequestOutput, ScoreResult
from a1.engine.sampling_params import SamplingParams

Output = Union[RequestOutput, ScoreResult]


@dataclass
class Pending:
    """A request in flight on a sequence. build(protocol) -> (path, payload, transport kind)
    writes what goes out, so the request can be re-sent as it is to another replica; a
    generation whose log-probs are re-read by a scoring request keeps its result in `held`."""

    kind: str  # "gen" | "score" (the policy driver's names)
    future: object
    history_len: int
    params: Optional[SamplingParams] = None
    release: bool = False
    keep: bool = True
    submitted: float = 0.0
    build: Optional[Callable[[Any], tuple[str, dict, str]]] = None
    replica: Any = None  # the replica it went to
    new_tokens: int = 0  # the most tokens it may add to the history (error messages)
    held: Any = None  # the generation waiting for its log-probs (engine.Held)


class SequenceTable:
    """seqs: id -> history; _busy: id -> the request in flight on it; _ready: finished outputs."""

    def __init__(self, vocab_size: int, max_model_len: int) -> None:
        self.vocab_size, self.max_model_len = vocab_size, max_model_len
        self.seqs: dict[int, list[int]] = {}
        self._busy: dict[int, Pending] = {}
        self._ready: list[Output] = []
        self._next_id = 0

    def _check_tokens(self, token_ids, name: str) -> list[int]:
        token_ids = list(token_ids)
        for t in token_ids:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < self.vocab_size:
                raise ValueError(f"{name} must hold ints in [0, {self.vocab_size}), got {t!r}")
        return token_ids

    def _idle(self, seq_id: int) -> list[int]:
        if seq_id not in self.seqs:
            raise KeyError(f"seq_id {seq_id} is not a live sequence")
        if seq_id in self._busy:
            raise RuntimeError(f"seq_id {seq_id} is busy with a {self._busy[seq_id].kind} request")
        return self.seqs[seq_id]

    def add_sequence(self, token_ids: list[int]) -> int:
        token_ids = self._check_tokens(token_ids, "token_ids")
        if not 1 <= len(token_ids) < self.max_model_len:
            raise ValueError(f"token_ids must hold 1 to {self.max_model_len - 1} tokens, got {len(token_ids)}")
        seq_id, self._next_id = self._next_id, self._next_id + 1
        self.seqs[seq_id] = token_ids
        return seq_id

    def token_ids(self, seq_id: int) -> list[int]:
        return list(self.seqs[seq_id])

    def num_tokens(self, seq_id: int) -> int:
        return len(self.seqs[seq_id])

    def is_live(self, seq_id: int) -> bool:
        return seq_id in self.seqs

    def append(self, seq_id: int, token_ids: list[int], commit: bool = True) -> None:
        seq = self._idle(seq_id)
        token_ids = self._check_tokens(token_ids, "token_ids")
        if len(seq) + len(token_ids) >= self.max_model_len:
            raise ValueError(f"appending {len(token_ids)} tokens to {len(seq)} exceeds max_model_len {self.max_model_len}")
        seq.extend(token_ids)

    def commit(self, seq_id: int) -> None:
        """Nothing to do remotely (the server's prefix cache keeps what it computed)."""
        self._idle(seq_id)

    def truncate(self, seq_id: int, num_tokens: int) -> None:
        seq = self._idle(seq_id)
        if not 1 <= num_tokens <= len(seq):
            raise ValueError(f"num_tokens must be in [1, {len(seq)}], got {num_tokens}")
        del seq[num_tokens:]

    def fork(self, seq_id: int) -> int:
        return self.add_sequence(self._idle(seq_id))

    def free(self, seq_id: int) -> None:
        self._idle(seq_id)
        del self.seqs[seq_id]

    def abort(self, seq_id: int) -> None:
        """Drop a sequence whatever it does; its request's answer is discarded."""
        if self.seqs.pop(seq_id, None) is None:
            raise KeyError(f"seq_id {seq_id} is not a live sequence")
        pending = self._busy.pop(seq_id, None)
        if pending is not None:
            pending.future.cancel()
        self._ready = [out for out in self._ready if _seq_id(out) != seq_id]



def _seq_id(out: Output) -> int:
    return out.request_id if isinstance(out, RequestOutput) else out.seq_id
