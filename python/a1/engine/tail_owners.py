"""Partial tails of shared prompts: N samples of one prompt share its full blocks through the
prefix cache, but each would recompute the tokens after the last full block. The first sequence to
allocate after a chain of full blocks becomes that chain's tail owner; a later sequence whose next
tokens are the same as the owner's takes a copy of the owner's partial block once the owner has
computed it (BlockManager.allocate), instead of computing those tokens again."""
from __future__ import annotations

from typing import Optional

from .sequence import Sequence


class TailOwners:
    """Which sequence computes the tokens after each chain of full blocks, keyed by the chain's last
    block hash (None for the empty chain). An owner counts while it holds blocks."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._owner: dict[Optional[int], Sequence] = {}
        self._key: dict[int, Optional[int]] = {}  # seq_id -> the chain it owns

    @staticmethod
    def _chain(seq: Sequence, num_full: int) -> Optional[int]:
        return seq.block_hashes[num_full - 1] if num_full else None

    def match(self, seq: Sequence, num_full: int) -> Optional[tuple[Sequence, int]]:
        """(owner, m) when seq's next m tokens after its first num_full blocks (up to its
        prefix_cap; 0 < m < block_size) are the owner's tokens there. Whether the owner has
        computed them is the caller's to check (owner.num_computed_tokens)."""
        start = num_full * self.block_size
        end = min(seq.prefix_cap, start + self.block_size - 1)
        if end <= start:
            return None
        owner = self._owner.get(self._chain(seq, num_full))
        if owner is None or owner is seq or len(owner.block_table) <= num_full:
            return None
        if owner.token_ids[:end] != seq.token_ids[:end]:  # the chain hash alone could collide
            return None
        return owner, end - start

    def register(self, seq: Sequence, num_full: int) -> None:
        """seq will compute the tokens after its first num_full (full, committed) blocks: it owns
        that chain's tail unless another sequence holding blocks already does."""
        if seq.feed_end <= num_full * self.block_size:
            return
        key = self._chain(seq, num_full)
        owner = self._owner.get(key)
        if owner is None or not owner.block_table:
            self._owner[key] = seq
            self._key[seq.seq_id] = key

    def drop(self, seq: Sequence) -> None:
        """seq frees its blocks: it owns nothing any more."""
        if seq.seq_id in self._key:
            key = self._key.pop(seq.seq_id)
            if self._owner.get(key) is seq:
                del self._owner[key]
