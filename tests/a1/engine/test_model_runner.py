"""ModelRunner: the metadata tensors of a mixed batch, logits only on sampled rows, scoring rows,
and copy-on-write applied before the forward."""
import pytest
import torch

from a1.engine.metrics import RequestMetrics
from a1.engine.model_runner import ModelRunner
from a1.engine.sampling_params import SamplingParams
from a1.engine.scheduler import ScheduledBatch
from a1.engine.sequence import Sequence
from a1.engine.tasks import GenerateTask, ScoreTask
from fake_lm import TinyLM


class Recorder(TinyLM):
    """TinyLM that records what the runner passes in."""

    def forward(self, input_ids, positions, kv_caches, meta):
        self.seen = dict(input_ids=input_ids.tolist(), positions=positions.tolist(), meta=meta,
                         block0=kv_caches[0][0][5].clone())
        return super().forward(input_ids, positions, kv_caches, meta)

    def compute_logits(self, hidden):
        self.logit_rows = hidden.shape[0]
        return super().compute_logits(hidden)


def seq_with(seq_id, tokens, computed, blocks, task):
    seq = Sequence(seq_id, tokens)
    seq.num_computed_tokens, seq.block_table, seq.task = computed, blocks, task
    return seq


def test_mixed_batch_metadata_and_outputs():
    model = Recorder(seed=1)
    runner = ModelRunner(model, num_blocks=8, block_size=4, eos_token_ids=[1])
    params = SamplingParams(temperature=0.0, logprobs=True)
    prefill = seq_with(0, [0, 2, 3, 4, 5, 6], 0, [3, 4], GenerateTask(params, 0, 6, False, True, RequestMetrics()))
    chunk = seq_with(1, [0, 7, 8, 9, 10, 11, 12], 0, [6], GenerateTask(params, 0, 7, False, True, RequestMetrics()))
    scored = seq_with(2, [0, 2, 9, 9, 8, 7], 0, [0, 1], ScoreTask(3, 3, False, False, 1.0))  # history of 3
    batch = ScheduledBatch()
    batch.add(prefill, 6)
    batch.add(chunk, 4)  # a prefill chunk: no sampling yet
    batch.add(scored, 5)  # feeds positions 0-4; rows 2, 3, 4 predict the scored tokens 3, 4, 5
    batch.copies = [(6, 5)]
    out = runner.run(batch)
    seen = model.seen
    assert seen["input_ids"] == [0, 2, 3, 4, 5, 6, 0, 7, 8, 9, 0, 2, 9, 9, 8]
    assert seen["positions"] == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 0, 1, 2, 3, 4]
    meta = seen["meta"]
    assert meta.slot_mapping.tolist() == [12, 13, 14, 15, 16, 17, 24, 25, 26, 27, 0, 1, 2, 3, 4]
    assert meta.block_table.tolist() == [[3, 4], [6, 0], [0, 1]] and meta.block_table.dtype == torch.int32
    assert meta.seq_lens.tolist() == [6, 4, 5] and meta.query_start_loc.tolist() == [0, 6, 10, 15]
    assert meta.slot_mapping.dtype == torch.int64 and meta.seq_lens.dtype == torch.int32
    assert model.logit_rows == 1 and out.sampled_seqs == [prefill] and len(out.sampled_logprobs) == 1
    (seq, logprobs, nll), = out.scores
    lp = model.dense_logprobs(scored.token_ids)
    assert seq is scored and logprobs == pytest.approx([float(lp[p, scored.token_ids[p + 1]]) for p in (2, 3, 4)], abs=1e-4)
    assert nll == pytest.approx(-sum(logprobs) / 3, abs=1e-5)
    dense_next = int(model.compute_logits(model.forward_dense(prefill.token_ids)[-1:]).argmax())
    assert out.sampled_ids == [dense_next]


def test_copies_run_before_the_forward():
    model = Recorder(seed=1)
    runner = ModelRunner(model, num_blocks=8, block_size=4, eos_token_ids=[1])
    k0, v0 = runner.kv_caches[0]
    k0[6].fill_(3.0)
    v0[6].fill_(4.0)
    seq = seq_with(0, [0, 2, 3], 0, [2], GenerateTask(SamplingParams(), 0, 3, False, True, RequestMetrics()))
    batch = ScheduledBatch()
    batch.add(seq, 3)
    batch.copies = [(6, 5)]
    runner.run(batch)
    assert torch.equal(model.seen["block0"], torch.full_like(k0[5], 3.0)) and torch.all(v0[5] == 4.0)
    assert all(torch.equal(k[5], k[6]) for k, _ in runner.kv_caches)


def test_kv_cache_shape_is_checked():
    class Bad(TinyLM):
        def kv_cache_shape(self, num_blocks, block_size):
            return (2, num_blocks, block_size, 2, 8)

    with pytest.raises(ValueError, match="kv_cache_shape"):
        ModelRunner(Bad(), 4, 4, [1])
