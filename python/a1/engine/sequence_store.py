"""SequenceStore: the sequences of one engine by id and what can be done to an idle one (add,
append, commit, fork, truncate, free; abort and cancel whatever it is doing), with the checks of
what callers submit bound to the model's limits. LLMEngine (llm_engine.py) adds the tasks and the
step on top."""
from __future__ import annotations

from typing import Optional

from . import validation
from .block_manager import BlockManager
from .sampling_params import SamplingParams
from .scheduler import Scheduler
from .sequence import Sequence, SequenceStatus


class SequenceStore:
    """Needs, set by the engine: vocab_size, max_model_len, eos_token_ids, block_manager,
    scheduler, and _ready (outputs made but not yet returned by step())."""

    vocab_size: int
    max_model_len: int
    eos_token_ids: list[int]
    block_manager: BlockManager
    scheduler: Scheduler
    _ready: list

    def __init__(self) -> None:
        self.seqs: dict[int, Sequence] = {}
        self._next_id = 0

    def _idle(self, seq_id: int) -> Sequence:
        seq = self.seqs.get(seq_id)
        if seq is None:
            raise KeyError(f"seq_id {seq_id} is not a live sequence")
        if seq.status is not SequenceStatus.IDLE:
            raise RuntimeError(f"seq_id {seq_id} is busy with a {type(seq.task).__name__}")
        return seq

    # validation (validation.py) against this model's vocabulary and max_model_len
    def check_sequence(self, token_ids: list[int], name: str = "token_ids") -> list[int]:
        """token_ids as add_sequence() takes them, or ValueError (nothing is changed)."""
        return validation.check_sequence(token_ids, self.vocab_size, self.max_model_len, name)

    def check_params(self, params: SamplingParams, name: str = "params") -> None:
        """TypeError / ValueError unless params suit this model (stop ids in the vocabulary, and
        some token left to sample before min_tokens)."""
        validation.check_params(params, self.vocab_size, name, self.eos_token_ids)

    def check_request(self, prompt_token_ids: list[int], params: Optional[SamplingParams] = None, name: str = "prompt") -> list[int]:
        """Validate a one-shot add_request(prompt_token_ids, params) without submitting it (a
        front checks a whole batch before submitting any of it); returns the token ids."""
        token_ids = self.check_sequence(prompt_token_ids, name)
        self.check_params(SamplingParams() if params is None else params)
        return token_ids

    def check_score(self, num_history: int, token_ids: list[int], temperature: float, name: str = "token_ids") -> list[int]:
        """Validate scoring token_ids after num_history tokens at temperature; returns the ids."""
        return validation.check_score(num_history, token_ids, temperature, self.vocab_size, self.max_model_len, name)

    def add_sequence(self, token_ids: list[int]) -> int:
        """A new idle sequence holding token_ids (nothing is computed until a task runs on it)."""
        token_ids = self.check_sequence(token_ids)
        seq = Sequence(self._next_id, token_ids)
        self._next_id += 1
        self.seqs[seq.seq_id] = seq
        return seq.seq_id

    def token_ids(self, seq_id: int) -> list[int]:
        return list(self.seqs[seq_id].token_ids)

    def append(self, seq_id: int, token_ids: list[int], commit: bool = True) -> None:
        """Append tokens to an idle sequence; they are computed by its next task."""
        seq = self._idle(seq_id)
        token_ids = validation.check_tokens(token_ids, self.vocab_size, "token_ids")
        if len(seq) + len(token_ids) >= self.max_model_len:
            raise ValueError(f"appending {len(token_ids)} tokens to {len(seq)} exceeds max_model_len {self.max_model_len}")
        seq.append_tokens(token_ids, commit)

    def commit(self, seq_id: int) -> None:
        """Mark all of the sequence's tokens as verified: they may enter the prefix cache."""
        seq = self._idle(seq_id)
        seq.num_committed = len(seq)
        self.block_manager.cache_blocks(seq)

    def fork(self, seq_id: int) -> int:
        """A new idle sequence sharing seq_id's history and KV blocks (copy-on-write)."""
        seq = self._idle(seq_id)
        child = self.block_manager.fork(seq, self._next_id)
        self._next_id += 1
        self.seqs[child.seq_id] = child
        self.scheduler.update_idle(child)
        self.scheduler.update_idle(seq)
        return child.seq_id

    def truncate(self, seq_id: int, num_tokens: int) -> None:
        """Roll an idle sequence back to its first num_tokens tokens."""
        seq = self._idle(seq_id)
        self.block_manager.truncate(seq, num_tokens)
        self.scheduler.update_idle(seq)

    def free(self, seq_id: int) -> None:
        self.scheduler.remove(self._idle(seq_id))
        del self.seqs[seq_id]

    def abort(self, seq_id: int) -> None:
        """Drop a sequence whatever it is doing (its pending task produces no output)."""
        seq = self.seqs.pop(seq_id, None)
        if seq is None:
            raise KeyError(f"seq_id {seq_id} is not a live sequence")
        self.scheduler.abort(seq)
        # an output already made for it (an empty score) must not surface later
        self._drop_ready_score(seq_id)

    def cancel(self, seq_id: int, num_tokens: Optional[int] = None) -> None:
        """Undo a request whose caller gave up, whatever its state (queued, running, finished). With
        num_tokens None the request made the sequence: it is aborted. Otherwise the sequence is the
        caller's: it stays live and idle, its task dropped (no output) and its history rolled back to
        its first num_tokens tokens. A sequence no longer live (a finished one-shot request, a failed
        one) is left alone."""
        seq = self.seqs.get(seq_id)
        if seq is None:
            return
        if num_tokens is None:
            self.abort(seq_id)
            return
        if seq.task is not None:
            self.scheduler.drop_task(seq)
        self._drop_ready_score(seq_id)
        # even at its full length: blocks taken ahead for tokens not computed yet go back, and the
        # prefix blocks it was computing are no longer in flight (others would wait for them)
        self.truncate(seq_id, min(num_tokens, len(seq)))

    def _drop_ready_score(self, seq_id: int) -> None:
        """Forget a score made for seq_id but not yet returned (in place: score() extends the list)."""
        self._ready[:] = [out for out in self._ready if getattr(out, "seq_id", None) != seq_id]

    def is_live(self, seq_id: int) -> bool:
        """Whether seq_id names a sequence of this engine (not yet freed, aborted or released)."""
        return seq_id in self.seqs

    def num_tokens(self, seq_id: int) -> int:
        """Length of the sequence's history (no copy, unlike token_ids())."""
        return len(self.seqs[seq_id])
