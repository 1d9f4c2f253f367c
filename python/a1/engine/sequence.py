"""A sequence: token history, its KV blocks and the task (tasks.py) it is running.

Invariant: the last token of an idle sequence is *pending* (not in the KV cache); a task says
which of its tokens are fed to the model (feed_end) and how many may come from the prefix cache
(prefix_cap).
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .tasks import Task


class SequenceStatus(enum.Enum):
    IDLE = "idle"  # no task; may hold KV blocks (evictable)
    WAITING = "waiting"  # has a task, holds no blocks
    RUNNING = "running"  # has a task and blocks


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
        self.task: Optional["Task"] = None

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
