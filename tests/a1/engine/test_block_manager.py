import pytest

from a1.engine import block_manager as bm_module
from a1.engine.block_manager import BlockManager, split_kv_budget
from a1.engine.metrics import RequestMetrics
from a1.engine.sampling_params import SamplingParams
from a1.engine.sequence import Sequence
from a1.engine.tasks import GenerateTask, ScoreTask


def gen_seq(seq_id: int, tokens: list[int]) -> Sequence:
    seq = Sequence(seq_id, tokens)
    seq.task = GenerateTask(SamplingParams(), 0, len(tokens), False, True, RequestMetrics())
    return seq


def compute(bm: BlockManager, seq: Sequence, budget: int = 1000) -> None:
    """Allocate (first time) or append, then pretend the forward ran and register full blocks."""
    n = bm.allocate(seq, budget) if not seq.block_table else min(seq.num_to_feed, budget)
    if seq.block_table and seq.num_computed_tokens + n > len(seq.block_table) * bm.block_size or n == 0:
        assert bm.can_append(seq, n)
        bm.append_slots(seq, n)
    assert n > 0
    seq.num_computed_tokens += n
    bm.cache_blocks(seq)


def refs(bm: BlockManager, seq: Sequence) -> list[int]:
    return [bm.blocks[b].ref_count for b in seq.block_table]


def test_allocate_free_and_registration():
    bm = BlockManager(8, 4)
    seq = gen_seq(0, list(range(10)))
    assert bm.allocate(seq, 100) == 10
    assert len(seq.block_table) == 3 and bm.num_free_blocks == 5
    seq.num_computed_tokens = 10
    bm.cache_blocks(seq)
    assert seq.num_cached_blocks == 2 and len(bm.hash_to_block) == 2
    bm.free(seq)
    assert bm.num_free_blocks == 8 and seq.block_table == [] and seq.num_computed_tokens == 0
    assert len(bm.hash_to_block) == 2  # freed full blocks stay findable


def test_prefix_hit_capped_below_last_token():
    bm = BlockManager(16, 4)
    a = gen_seq(0, list(range(8)))
    compute(bm, a)
    a_blocks = list(a.block_table)
    bm.free(a)
    b = gen_seq(1, list(range(8)))  # same 8 tokens: the last one must be recomputed -> 1 block hit
    assert bm.allocate(b, 100) == 4 and b.num_computed_tokens == 4
    c = gen_seq(2, list(range(8)) + [50, 51, 52])
    assert bm.allocate(c, 100) == 3 and c.num_computed_tokens == 8
    assert c.block_table[:2] == a_blocks and b.block_table[0] == a_blocks[0]
    assert refs(bm, c)[:2] == [2, 1]  # block 0 shared by b and c, block 1 by c only
    assert bm.num_prefix_hits == 12 and bm.num_prefix_queries == 8 + 8 + 11


def test_score_task_caps_prefix_at_history():
    bm = BlockManager(16, 4)
    a = gen_seq(0, list(range(12)))
    compute(bm, a)
    bm.free(a)
    s = Sequence(1, list(range(12)))
    s.task = ScoreTask(start=8, num_tokens=4, keep=False, commit=False, temperature=1.0)
    s.num_committed = 8
    bm.allocate(s, 100)
    assert s.num_computed_tokens == 4  # the row of history token 7 is needed: hit capped at 7 tokens


def test_hit_on_block_in_use_shares_it():
    bm = BlockManager(16, 4)
    a = gen_seq(0, list(range(9)))
    compute(bm, a)
    b = gen_seq(1, list(range(9)))
    bm.allocate(b, 100)
    assert b.block_table[:2] == a.block_table[:2] and refs(bm, a) == [2, 2, 1]


def test_hash_collision_is_a_miss(monkeypatch):
    monkeypatch.setattr(bm_module, "hash_block_tokens", lambda parent, tokens: 7)
    bm = BlockManager(16, 4)
    a = gen_seq(0, [1, 2, 3, 4, 5, 6, 7, 8, 9])
    compute(bm, a)
    bm.free(a)
    b = gen_seq(1, [9, 9, 9, 9, 5, 6, 7, 8, 9])  # same hashes, other tokens in block 0
    assert bm.allocate(b, 100) == 9 and b.num_computed_tokens == 0
    c = gen_seq(2, [1, 2, 3, 4, 0, 0, 0, 0, 9])  # block 0 equal, block 1 collides
    bm.allocate(c, 100)
    assert c.num_computed_tokens == 4


def test_fork_shares_blocks_and_copies_partial_tail_on_write():
    bm = BlockManager(16, 4)
    a = gen_seq(0, list(range(7)))
    compute(bm, a)  # 7 computed: block 0 full, block 1 holds 3
    child = bm.fork(a, 1)
    assert child.block_table == a.block_table and refs(bm, a) == [2, 2]
    a.append_tokens([40], commit=True)
    shared_tail = a.block_table[1]
    assert bm.can_append(a, 1)
    bm.append_slots(a, 1)
    assert a.block_table[1] != shared_tail and bm.blocks[shared_tail].ref_count == 1
    assert bm.take_copies() == [(shared_tail, a.block_table[1])]
    child.append_tokens([41], commit=True)
    bm.append_slots(child, 1)  # the tail is now the child's alone: written in place
    assert child.block_table[1] == shared_tail and bm.take_copies() == []
    assert refs(bm, a) == [2, 1] and refs(bm, child) == [2, 1]


def test_copy_dropped_when_destination_freed():
    bm = BlockManager(16, 4)
    a = gen_seq(0, list(range(6)))
    compute(bm, a)
    bm.fork(a, 1)
    a.append_tokens([9], commit=True)
    bm.append_slots(a, 1)
    bm.free(a)  # preempted before the forward: its copy must not run
    assert bm.take_copies() == []


def test_truncate_releases_blocks_ref_aware():
    bm = BlockManager(16, 4)
    a = gen_seq(0, list(range(13)))
    compute(bm, a)  # 13 computed, 4 blocks
    b = bm.fork(a, 1)
    used = bm.num_used_blocks
    bm.truncate(a, 5)  # keeps 4 computed tokens, 5th pending
    assert len(a) == 5 and a.num_computed_tokens == 4 and len(a.block_table) == 1
    assert bm.num_used_blocks == used  # b still holds every block
    assert refs(bm, b) == [2, 1, 1, 1]
    bm.free(b)
    assert bm.num_used_blocks == 1
    with pytest.raises(ValueError, match="num_tokens"):
        bm.truncate(a, 0)


def test_truncate_into_cached_block_unhashes_it():
    bm = BlockManager(16, 4)
    a = gen_seq(0, list(range(9)))
    compute(bm, a)  # blocks 0 and 1 registered
    tail = a.block_table[1]
    bm.truncate(a, 7)  # 6 computed: block 1 becomes a partial tail to be overwritten
    assert bm.blocks[tail].hash is None and tail not in bm.hash_to_block.values()
    assert a.num_cached_blocks == 1
    a.append_tokens([90, 91], commit=True)
    compute(bm, a)
    assert bm.take_copies() == []  # not shared: written in place
    b = gen_seq(1, list(range(9)))
    bm.allocate(b, 100)
    assert b.num_computed_tokens == 4  # block 1 of the old tokens is gone from the cache


def test_writing_into_a_formerly_shared_cached_tail_unhashes_it():
    bm = BlockManager(16, 4)
    a = gen_seq(0, list(range(9)))
    compute(bm, a)  # blocks 0, 1 registered
    b = bm.fork(a, 1)
    tail = a.block_table[1]
    bm.truncate(a, 7)  # tail shared with b: it keeps its hash for now
    assert bm.blocks[tail].hash is not None
    bm.free(b)  # now a alone holds the cached tail ...
    a.append_tokens([90, 91], commit=True)
    compute(bm, a)  # ... and writing into it must take it out of the cache (no copy needed)
    assert a.block_table[1] == tail and bm.take_copies() == []
    assert tail not in bm.hash_to_block.values() or bm.blocks[tail].token_ids == tuple(a.token_ids[4:8])
    c = gen_seq(2, list(range(9)))
    bm.allocate(c, 100)
    assert c.num_computed_tokens == 4


def test_uncommitted_tokens_stay_out_of_cache_until_committed():
    bm = BlockManager(16, 4)
    a = gen_seq(0, list(range(4)))
    a.append_tokens(list(range(4, 12)), commit=False)  # e.g. an unverified draft step
    a.task.start = len(a)
    compute(bm, a)
    assert a.num_computed_tokens == 12 and a.num_cached_blocks == 1 and len(bm.hash_to_block) == 1
    a.num_committed = len(a)
    bm.cache_blocks(a)
    assert a.num_cached_blocks == 3 and len(bm.hash_to_block) == 3


def test_lru_evicts_least_recently_freed_first():
    bm = BlockManager(4, 2)
    a, b = gen_seq(0, [1, 2, 3, 4]), gen_seq(1, [6, 7, 8, 9])
    for s in (a, b):
        s.task.start = 0  # generating after all 4 tokens: 2 full blocks each
    compute(bm, a)
    compute(bm, b)
    a_blocks, b_blocks = list(a.block_table), list(b.block_table)
    bm.free(a)
    bm.free(b)
    assert bm.num_free_blocks == 4 and len(bm.hash_to_block) == 4
    c = gen_seq(2, [20, 21, 22, 23])
    c.task.start = 0
    assert bm.allocate(c, 100) == 4
    assert sorted(c.block_table) == sorted(a_blocks)  # a's blocks were freed first: evicted first
    assert all(bm.blocks[x].hash is None for x in a_blocks) and len(bm.hash_to_block) == 2
    bm.free(c)
    e = gen_seq(4, [1, 2, 3])  # 2 blocks: the two plain ones, b stays cached
    bm.allocate(e, 100)
    assert e.num_computed_tokens == 0  # a's prefix is gone
    bm.free(e)
    d = gen_seq(3, [6, 7, 8, 9, 10])
    bm.allocate(d, 100)
    assert d.block_table[:2] == b_blocks and d.num_computed_tokens == 4  # b's blocks still cached


def test_hit_moves_block_to_most_recently_freed():
    bm = BlockManager(4, 2)
    a, b = gen_seq(0, [1, 2, 3]), gen_seq(1, [6, 7, 8])
    compute(bm, a)
    compute(bm, b)
    a0, b0 = a.block_table[0], b.block_table[0]
    bm.free(a)
    bm.free(b)  # cached LRU: a0, b0 (the partial tails are plain free blocks)
    a2 = gen_seq(2, [1, 2, 3])
    bm.allocate(a2, 100)
    assert a2.block_table[0] == a0  # a hit takes a0 out of the LRU ...
    bm.free(a2)  # ... and freeing puts it back as the most recently freed
    c = gen_seq(3, [30, 31, 32, 33, 34, 35, 36])
    bm.allocate(c, 100)  # 4 blocks: the two plain ones, then b0 (older), then a0
    assert c.block_table[2:] == [b0, a0]
    assert not bm.hash_to_block


def test_allocate_reports_shortage_without_side_effects():
    bm = BlockManager(3, 4)
    a = gen_seq(0, list(range(9)))
    compute(bm, a)
    b = gen_seq(1, list(range(40, 49)))
    free, hashes = bm.num_free_blocks, dict(bm.hash_to_block)
    assert bm.allocate(b, 100) == 0
    assert bm.num_free_blocks == free and bm.hash_to_block == hashes and b.block_table == []
    assert not bm.can_append(a, 4)


def test_prefix_in_flight_until_registered():
    bm = BlockManager(16, 4)
    a, b = gen_seq(0, list(range(9))), gen_seq(1, list(range(9)))
    bm.allocate(a, 100)
    assert bm.prefix_in_flight(b) and not bm.prefix_in_flight(a)
    a.num_computed_tokens = 9
    bm.cache_blocks(a)
    assert not bm.prefix_in_flight(b)
    bm.allocate(b, 100)
    assert b.num_computed_tokens == 8
    c = gen_seq(2, list(range(9)))
    d = gen_seq(3, list(range(9)))
    bm.free(a)
    bm.free(b)
    assert not bm.prefix_in_flight(c) and not bm.prefix_in_flight(d)


def test_split_kv_budget_shares_one_budget():
    target, draft = 4096, 1024  # bytes per token
    blocks = split_kv_budget(10_000_000, [target, draft], 16)
    assert blocks[0] == blocks[1] > 0
    assert blocks[0] * 16 * (target + draft) <= 10_000_000 < (blocks[0] + 1) * 16 * (target + draft)
    with pytest.raises(ValueError, match="kv cache budget"):
        split_kv_budget(100, [target], 16)
    with pytest.raises(ValueError, match="bytes_per_token"):
        split_kv_budget(100, [0], 16)
