"""Scheduler with the block manager but no model: a step 'computes' the fed tokens and appends a
fake sampled token when a generation row reached its end."""
from a1.engine.block_manager import BlockManager
from a1.engine.metrics import EngineMetrics, RequestMetrics
from a1.engine.sampling_params import SamplingParams
from a1.engine.scheduler import Scheduler
from a1.engine.sequence import Sequence, SequenceStatus
from a1.engine.tasks import GenerateTask


def make(num_blocks=64, block_size=4, budget=8, max_seqs=16):
    bm = BlockManager(num_blocks, block_size)
    return bm, Scheduler(bm, budget, max_seqs, EngineMetrics())


def submit(sched: Scheduler, seq_id: int, tokens: list[int]) -> Sequence:
    seq = Sequence(seq_id, tokens)
    seq.task = GenerateTask(SamplingParams(), 0, len(tokens), False, True, RequestMetrics())
    sched.add(seq)
    return seq


def fake_step(sched: Scheduler, bm: BlockManager, target_len: dict[int, int]) -> list[tuple[int, int]]:
    batch = sched.schedule()
    assert batch.total_tokens <= sched.max_num_batched_tokens
    for seq, n in zip(batch.seqs, batch.num_tokens):
        assert len(seq.block_table) * bm.block_size >= seq.num_computed_tokens + n
        seq.num_computed_tokens += n
        if seq.num_computed_tokens == len(seq):
            seq.append_tokens([1000 + len(seq)], commit=True)  # deterministic "sample"
        bm.cache_blocks(seq)
    for seq in list(sched.running):
        if len(seq) >= target_len[seq.seq_id]:
            sched.finish(seq)
            sched.remove(seq)
    return [(s.seq_id, n) for s, n in zip(batch.seqs, batch.num_tokens)]


def test_budget_and_prefill_chunking():
    bm, sched = make(budget=8)
    submit(sched, 0, list(range(20)))
    steps = [fake_step(sched, bm, {0: 24}) for _ in range(3)]
    assert steps == [[(0, 8)], [(0, 8)], [(0, 4)]]  # prompt in chunks; the last one samples
    seq = sched.running[0]
    assert len(seq) == 21 and seq.num_computed_tokens == 20


def test_decodes_first_then_new_prefills_share_the_budget():
    bm, sched = make(budget=8)
    submit(sched, 0, list(range(3)))
    assert fake_step(sched, bm, {0: 10, 1: 20}) == [(0, 3)]
    submit(sched, 1, list(range(50, 62)))
    assert fake_step(sched, bm, {0: 10, 1: 20}) == [(0, 1), (1, 7)]  # decode, then a 7-token chunk
    assert fake_step(sched, bm, {0: 10, 1: 20}) == [(0, 1), (1, 5)]


def test_max_num_seqs_limits_running():
    bm, sched = make(budget=64, max_seqs=2)
    for i in range(3):
        submit(sched, i, [i, i + 1])
    assert [sid for sid, _ in fake_step(sched, bm, {0: 5, 1: 5, 2: 5})] == [0, 1]
    assert [s.seq_id for s in sched.waiting] == [2]


def test_full_pool_preempts_newest_and_everything_completes():
    bm, sched = make(num_blocks=6, block_size=4, budget=64)
    target = {i: 16 for i in range(3)}  # 3 x 4 blocks needed, 6 in the pool
    for i in range(3):
        submit(sched, i, [10 * i + j for j in range(5)])
    finished_order, done = [], set()
    for _ in range(200):
        if not sched.has_work():
            break
        before = {s.seq_id for s in sched.running}
        fake_step(sched, bm, target)
        done |= before - {s.seq_id for s in sched.running} - {s.seq_id for s in sched.waiting}
        for sid in sorted(before - {s.seq_id for s in sched.running} - {s.seq_id for s in sched.waiting}):
            finished_order.append(sid)
        assert bm.num_used_blocks <= 6
    assert not sched.has_work() and done == {0, 1, 2}
    assert sched.metrics.num_preemptions > 0
    assert finished_order[0] == 0  # the oldest is never the victim
    assert bm.num_used_blocks == 0


def test_idle_sequences_are_evicted_before_running_ones_are_preempted():
    bm, sched = make(num_blocks=4, block_size=4, budget=64)
    idle = submit(sched, 0, list(range(9)))
    fake_step(sched, bm, {0: 11})
    sched.finish(idle)  # kept idle with 3 blocks
    assert sched.idle and len(idle.block_table) == 3
    submit(sched, 1, list(range(100, 109)))
    fake_step(sched, bm, {1: 12})
    assert idle.block_table == [] and idle.num_computed_tokens == 0 and not sched.idle
    assert sched.metrics.num_idle_evictions == 1 and sched.metrics.num_preemptions == 0
    assert idle.status is SequenceStatus.IDLE


def test_shared_prefix_waits_for_its_owner():
    bm, sched = make(num_blocks=64, block_size=4, budget=64)
    prompt = list(range(13))
    for i in range(3):
        submit(sched, i, prompt)
    assert fake_step(sched, bm, {i: 20 for i in range(3)}) == [(0, 13)]  # others wait a step ...
    step = fake_step(sched, bm, {i: 20 for i in range(3)})
    assert step == [(0, 1), (1, 1), (2, 1)]  # ... then hit the 3 cached blocks
    shared = sched.running[0].block_table[:3]
    assert all(s.block_table[:3] == shared for s in sched.running)
    assert bm.num_prefix_hits == 24
