"""KV block pool of one model: ref counts, prefix cache of full blocks, fork/COW and truncation.

Prefix cache: a full block whose tokens are all computed and committed is registered under the
chained hash hash(parent hash, block tokens); a hit also compares the tokens and parent hash, so a
hash collision is a miss, never wrong KV. Freed registered blocks stay findable in an LRU (oldest
freed is evicted first, lazily, when the block is reallocated). Uncommitted tokens (unverified
drafts, scored-but-not-kept steps) are never registered.

Partial tails (tail_owners.py): a sequence whose tokens after its cached full blocks were computed
by another sequence takes a copy of that sequence's partial block (copy_blocks before the next
forward) instead of computing them; a copy, not a shared block, since each goes on to write there.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence as Seq

from .sequence import Sequence, SequenceStatus
from .tail_owners import TailOwners


def hash_block_tokens(parent_hash: Optional[int], token_ids: tuple[int, ...]) -> int:
    """Chained hash of one full block (deterministic: ints and tuples of ints hash stably)."""
    return hash((parent_hash, token_ids))


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: Optional[int] = None  # set while the block holds a registered full block
    parent_hash: Optional[int] = None
    token_ids: Optional[tuple[int, ...]] = None

    def clear_hash(self) -> None:
        self.hash = self.parent_hash = self.token_ids = None


@dataclass
class AllocationPlan:
    """What allocate() would take: cached prefix blocks, a computed partial tail to copy (or None),
    the tokens they give, the first chunk's tokens and the new blocks (the copy's included)."""

    hits: list[int]
    tail: Optional[int]
    num_hit: int
    num_new: int
    num_new_blocks: int


def split_kv_budget(kv_cache_bytes: int, bytes_per_token: Seq[int], block_size: int) -> list[int]:
    """Blocks per pool when several models (a target and a draft) share one budget: every pool
    gets the same number of blocks, so each can hold the same tokens, and the pools' bytes add up
    to at most the budget (each model's share is proportional to its bytes per token)."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if not bytes_per_token or any(b <= 0 for b in bytes_per_token):
        raise ValueError(f"bytes_per_token must be positive, got {list(bytes_per_token)}")
    num_blocks = int(kv_cache_bytes) // (block_size * sum(bytes_per_token))
    if num_blocks < 1:
        raise ValueError(
            f"kv cache budget of {kv_cache_bytes} bytes is below one block of {block_size} tokens "
            f"({block_size * sum(bytes_per_token)} bytes)"
        )
    return [num_blocks] * len(bytes_per_token)


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be >= 1, got {num_blocks}, {block_size}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self._free_plain: list[int] = list(range(num_blocks - 1, -1, -1))  # popped from the end
        self._free_cached: OrderedDict[int, None] = OrderedDict()  # LRU: oldest freed first
        self.hash_to_block: dict[int, int] = {}
        self._inflight: dict[int, int] = {}  # hash -> seq_id computing that block right now
        self._copies: dict[int, int] = {}  # COW: dst -> src, applied before the next forward
        self._tails = TailOwners(block_size)
        self._copy_sources: list[int] = []  # partial tails being copied: held until the copy ran
        self.num_prefix_queries = self.num_prefix_hits = 0

    # ------------------------------------------------------------------ pool
    @property
    def num_free_blocks(self) -> int:
        return len(self._free_plain) + len(self._free_cached)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    def _allocate_block(self) -> int:
        if self._free_plain:
            block_id = self._free_plain.pop()
        else:  # evict the least recently freed cached block
            block_id, _ = self._free_cached.popitem(last=False)
            self._unhash(self.blocks[block_id])
        self.blocks[block_id].ref_count = 1
        return block_id

    def _release(self, block_id: int) -> None:
        block = self.blocks[block_id]
        block.ref_count -= 1
        assert block.ref_count >= 0, f"block {block_id} released twice"
        if block.ref_count == 0:
            self._copies.pop(block_id, None)
            if block.hash is not None and self.hash_to_block.get(block.hash) == block_id:
                self._free_cached[block_id] = None
            else:
                block.clear_hash()
                self._free_plain.append(block_id)

    def _touch(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self._free_cached[block_id]
        block.ref_count += 1

    def take_copies(self) -> list[tuple[int, int]]:
        """(src, dst) block pairs recorded by copy-on-write and partial-tail hits since the last call."""
        pairs = [(src, dst) for dst, src in self._copies.items()]
        self._copies.clear()
        return pairs

    def copies_done(self) -> None:
        """The forward that applied the last take_copies() has run: release the partial tails it
        copied from (held so that no other sequence could be given and overwrite them first)."""
        for block_id in self._copy_sources:
            self._release(block_id)
        self._copy_sources.clear()

    # ------------------------------------------------------------------ prefix cache
    def _hashes(self, seq: Sequence) -> list[int]:
        """Extend seq.block_hashes to the full committed blocks and return them."""
        hashes, bs, tokens = seq.block_hashes, self.block_size, seq.token_ids
        for i in range(len(hashes), seq.num_committed // bs):
            hashes.append(hash_block_tokens(hashes[-1] if hashes else None, tuple(tokens[i * bs : (i + 1) * bs])))
        return hashes

    def _lookup(self, seq: Sequence) -> list[int]:
        """Block ids of the longest cached prefix (full blocks, at most seq.prefix_cap tokens)."""
        if not self.enable_prefix_caching:
            return []
        bs, tokens, hits = self.block_size, seq.token_ids, []
        hashes = self._hashes(seq)
        for i in range(min(len(hashes), max(seq.prefix_cap, 0) // bs)):
            block_id = self.hash_to_block.get(hashes[i])
            if block_id is None:
                break
            block = self.blocks[block_id]
            parent = hashes[i - 1] if i else None
            if block.parent_hash != parent or block.token_ids != tuple(tokens[i * bs : (i + 1) * bs]):
                break  # hash collision
            hits.append(block_id)
        return hits

    def prefix_in_flight(self, seq: Sequence) -> bool:
        """True when the next block of seq's prefix, or the partial tail after its full blocks, is
        being computed by another running sequence; the scheduler then waits a step so the prefix
        is computed once and then shared."""
        if not self.enable_prefix_caching:
            return False
        i = len(self._lookup(seq))
        hashes = seq.block_hashes
        if i < len(hashes) and i < seq.prefix_cap // self.block_size:
            owner = self._inflight.get(hashes[i])
            return owner is not None and owner != seq.seq_id
        match = self._tails.match(seq, i)
        if match is None:
            return False
        owner, end = match[0], i * self.block_size + match[1]
        # waiting pays only while the owner's task is still going to compute those tokens
        return owner.num_computed_tokens < end and owner.status is SequenceStatus.RUNNING and owner.feed_end >= end

    def cache_blocks(self, seq: Sequence) -> None:
        """Register seq's full blocks that are computed and committed."""
        if not self.enable_prefix_caching:
            return
        limit = min(seq.num_computed_tokens, seq.num_committed) // self.block_size
        if limit <= seq.num_cached_blocks:
            return
        hashes, bs = self._hashes(seq), self.block_size
        for i in range(seq.num_cached_blocks, limit):
            block = self.blocks[seq.block_table[i]]
            if self._inflight.get(hashes[i]) == seq.seq_id:
                del self._inflight[hashes[i]]
            if block.hash is not None:
                continue  # shared through a prefix hit or a fork: already registered
            block.hash, block.parent_hash = hashes[i], hashes[i - 1] if i else None
            block.token_ids = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            self.hash_to_block.setdefault(block.hash, block.block_id)
        seq.num_cached_blocks = limit

    def _drop_inflight(self, seq: Sequence) -> None:
        for h in seq.block_hashes[seq.num_cached_blocks :]:
            if self._inflight.get(h) == seq.seq_id:
                del self._inflight[h]

    # ------------------------------------------------------------------ sequences
    def _plan(self, seq: Sequence, token_budget: int) -> AllocationPlan:
        hits = self._lookup(seq)
        num_hit, tail = len(hits) * self.block_size, None
        match = self._tails.match(seq, len(hits)) if self.enable_prefix_caching else None
        if match is not None and match[0].num_computed_tokens >= num_hit + match[1]:
            tail = match[0].block_table[len(hits)]
            num_hit += match[1]
        num_new = min(seq.feed_end - num_hit, token_budget)
        return AllocationPlan(hits, tail, num_hit, num_new, cdiv(num_hit + num_new, self.block_size) - len(hits))

    def _fits(self, plan: AllocationPlan) -> bool:
        reclaimed = sum(1 for b in plan.hits if self.blocks[b].ref_count == 0)  # cached but free: leave the pool
        return plan.num_new > 0 and plan.num_new_blocks + reclaimed <= self.num_free_blocks

    def allocate(self, seq: Sequence, token_budget: int) -> int:
        """First allocation of a sequence that holds no blocks: take its cached prefix (setting
        num_computed_tokens), a copy of a matching computed partial tail, and blocks for the first
        chunk of at most token_budget tokens. Returns the chunk length, or 0 (and changes nothing)
        when the pool is short."""
        assert not seq.block_table and seq.num_computed_tokens == 0, "allocate() needs a sequence without blocks"
        plan = self._plan(seq, token_budget)
        if not self._fits(plan):
            return 0
        for b in plan.hits:
            self._touch(b)
        seq.block_table = plan.hits + [self._allocate_block() for _ in range(plan.num_new_blocks)]
        if plan.tail is not None:  # its KV, copied before the next forward; the source held until then
            self._touch(plan.tail)
            self._copy_sources.append(plan.tail)
            self._copies[seq.block_table[len(plan.hits)]] = plan.tail
        seq.num_cached_blocks, seq.num_computed_tokens = len(plan.hits), plan.num_hit
        self.num_prefix_queries += len(seq.token_ids)
        self.num_prefix_hits += plan.num_hit
        if self.enable_prefix_caching:  # mark the committed full blocks this sequence will compute
            num_full = min(seq.num_committed, seq.feed_end) // self.block_size
            for h in seq.block_hashes[len(plan.hits) : num_full]:
                self._inflight.setdefault(h, seq.seq_id)
            if plan.tail is None:  # the tokens after its last full committed block are its to compute
                self._tails.register(seq, num_full)
        return plan.num_new

    def _needs_copy(self, seq: Sequence) -> bool:
        start = seq.num_computed_tokens
        return start % self.block_size != 0 and self.blocks[seq.block_table[start // self.block_size]].ref_count > 1

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Whether blocks for num_new_tokens more tokens (plus a copy-on-write) are free."""
        needed = cdiv(seq.num_computed_tokens + num_new_tokens, self.block_size) - len(seq.block_table)
        return needed + self._needs_copy(seq) <= self.num_free_blocks

    def append_slots(self, seq: Sequence, num_new_tokens: int) -> None:
        """Blocks for the next num_new_tokens positions. A partial tail block about to be written
        is copied first when shared (copy-on-write) and leaves the prefix cache when it is ours
        alone. Call can_append() before."""
        assert self.can_append(seq, num_new_tokens), "append_slots() without free blocks"
        if seq.num_computed_tokens % self.block_size:
            tail = self.blocks[seq.block_table[-1]]
            if tail.ref_count > 1:
                dst = self._allocate_block()
                tail.ref_count -= 1  # still >= 1: another sequence holds it
                self._copies[dst] = tail.block_id
                seq.block_table[-1] = dst
            elif tail.hash is not None:
                self._unhash(tail)
        needed = cdiv(seq.num_computed_tokens + num_new_tokens, self.block_size) - len(seq.block_table)
        seq.block_table.extend(self._allocate_block() for _ in range(needed))

    def _unhash(self, block: Block) -> None:
        if self.hash_to_block.get(block.hash) == block.block_id:
            del self.hash_to_block[block.hash]
        block.clear_hash()

    def free(self, seq: Sequence) -> None:
        """Release every block (tail first, so chain tails are evicted first); the sequence will
        recompute from scratch (its registered blocks may still be hit in the prefix cache)."""
        self._drop_inflight(seq)
        self._tails.drop(seq)
        for block_id in reversed(seq.block_table):
            self._release(block_id)
        seq.block_table = []
        seq.num_computed_tokens = seq.num_cached_blocks = 0

    def fork(self, seq: Sequence, child_id: int) -> Sequence:
        """A child sharing all of seq's blocks; a shared partial tail is copied on first write."""
        child = seq.fork(child_id)
        for block_id in child.block_table:
            self.blocks[block_id].ref_count += 1
        return child

    def truncate(self, seq: Sequence, num_tokens: int) -> None:
        """Roll seq back to its first num_tokens tokens (the last of them becomes pending)."""
        if not 1 <= num_tokens <= len(seq.token_ids):
            raise ValueError(f"num_tokens must be in [1, {len(seq.token_ids)}], got {num_tokens}")
        bs = self.block_size
        self._drop_inflight(seq)
        computed = min(seq.num_computed_tokens, num_tokens - 1)
        keep = cdiv(computed, bs)
        for block_id in reversed(seq.block_table[keep:]):
            self._release(block_id)
        del seq.block_table[keep:]
        if computed % bs:  # the tail will be written again: it must leave the prefix cache
            tail = self.blocks[seq.block_table[-1]]
            if tail.hash is not None and tail.ref_count == 1:
                self._unhash(tail)
        del seq.token_ids[num_tokens:]
        seq.num_committed = min(seq.num_committed, num_tokens)
        del seq.block_hashes[seq.num_committed // bs :]
        seq.num_cached_blocks = min(seq.num_cached_blocks, computed // bs)
        seq.num_computed_tokens = computed
