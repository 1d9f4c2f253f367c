"""Partial tails: samples of one prompt take a copy of the KV its first sequence computed after
the last full block instead of recomputing those tokens (engine/tail_owners.py)."""
from a1.engine.block_manager import BlockManager
from a1.engine.sequence import SequenceStatus
from test_block_manager import compute, gen_seq, refs


def test_partial_tail_is_copied_from_its_owner():
    bm = BlockManager(16, 4)
    owner = gen_seq(0, list(range(10)))  # blocks [0-3] [4-7] [8-9 partial]
    compute(bm, owner)
    tail = owner.block_table[2]
    twin = gen_seq(1, list(range(10)))
    assert not bm.prefix_in_flight(twin)
    assert bm.allocate(twin, 100) == 1  # only the last token, whose row is sampled
    assert twin.num_computed_tokens == 9 and twin.block_table[:2] == owner.block_table[:2]
    assert twin.block_table[2] != tail and bm.take_copies() == [(tail, twin.block_table[2])]
    assert refs(bm, owner) == [2, 2, 2]  # the tail held until the copy has run
    bm.copies_done()
    assert refs(bm, owner) == [2, 2, 1] and refs(bm, twin) == [2, 2, 1]
    assert bm.num_prefix_hits == 9


def test_tail_waits_while_its_owner_computes_it():
    bm = BlockManager(16, 4)
    owner, twin = gen_seq(0, list(range(3))), gen_seq(1, list(range(3)))  # all tail, no full block
    assert bm.allocate(owner, 100) == 3  # scheduled, not computed yet
    assert not bm.prefix_in_flight(twin)  # the owner is not running: nothing to wait for
    owner.status = SequenceStatus.RUNNING
    assert bm.prefix_in_flight(twin)
    owner.num_computed_tokens = 3
    bm.cache_blocks(owner)
    assert not bm.prefix_in_flight(twin)
    assert bm.allocate(twin, 100) == 1 and bm.take_copies() == [(owner.block_table[0], twin.block_table[0])]


def test_only_matching_computed_tokens_are_copied():
    bm = BlockManager(16, 4)
    owner = gen_seq(0, list(range(11)))  # tail [8, 9, 10]
    compute(bm, owner)
    shorter = gen_seq(1, list(range(10)) + [99])  # first two tail tokens match
    assert bm.allocate(shorter, 100) == 1 and shorter.num_computed_tokens == 10
    other = gen_seq(2, list(range(8)) + [77, 9, 10])  # differs at the first tail token
    assert bm.allocate(other, 100) == 3 and other.num_computed_tokens == 8
    assert [src for src, _ in bm.take_copies()] == [owner.block_table[2]]


def test_freed_owner_stops_sharing_and_its_copy_source_survives_until_copied():
    bm = BlockManager(8, 4)
    owner = gen_seq(0, list(range(10)))
    compute(bm, owner)
    tail = owner.block_table[2]
    twin = gen_seq(1, list(range(10)))
    assert bm.allocate(twin, 100) == 1
    bm.free(owner)
    assert bm.blocks[tail].ref_count == 1  # still held for the pending copy: not handed out
    late = gen_seq(2, list(range(10)))
    assert bm.allocate(late, 100) == 2  # no owner left: its tail is computed again (full blocks hit)
    assert tail not in late.block_table
    bm.copies_done()
    assert bm.blocks[tail].ref_count == 0 and bm.num_used_blocks == 4  # 2 shared full blocks + a tail each


def test_prefix_caching_off_shares_no_tail():
    bm = BlockManager(16, 4, enable_prefix_caching=False)
    owner = gen_seq(0, list(range(10)))
    compute(bm, owner)
    twin = gen_seq(1, list(range(10)))
    assert not bm.prefix_in_flight(twin) and bm.allocate(twin, 100) == 10 and bm.take_copies() == []
