"""Per-request sampling parameters reach the sampler, row by row, and score() applies its temperature.

The sampler (`ops.sample`, as the model runner calls it) is wrapped to record what each batched
call receives: a runner that passed temperature 1, top_k 0, top_p 1 (or one seed) for every row
would still generate plausible text, so only the recorded rows can tell.
"""
from __future__ import annotations

from collections import defaultdict

import pytest
import torch

import a1.engine.model_runner as model_runner
from a1 import LLM
from a1.engine import EngineConfig, LLMEngine, RequestOutput, SamplingParams
from fake_lm import Loaded

MAX_TOKENS = 5

# (params, the (temperature, top_k, top_p) the sampler must get); the tiny model's vocabulary is 48
REQUESTS = [
    (SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True, seed=11), (0.0, 0, 1.0)),
    (SamplingParams(temperature=0.7, top_k=5, max_tokens=MAX_TOKENS, ignore_eos=True, seed=12), (0.7, 5, 1.0)),
    (SamplingParams(temperature=1.3, top_p=0.8, max_tokens=MAX_TOKENS, ignore_eos=True, seed=13), (1.3, 0, 0.8)),
    (SamplingParams(temperature=0.9, top_k=20, top_p=0.6, max_tokens=MAX_TOKENS, ignore_eos=True, seed=14),
     (0.9, 20, 0.6)),
    # top_k -1 and top_k >= the vocabulary both mean "off": the sampler gets 0
    (SamplingParams(temperature=1.1, top_k=-1, max_tokens=MAX_TOKENS, ignore_eos=True, seed=15), (1.1, 0, 1.0)),
    (SamplingParams(temperature=0.5, top_k=1000, top_p=0.95, max_tokens=MAX_TOKENS, ignore_eos=True, seed=-16),
     (0.5, 0, 0.95)),
]


class SampleRecorder:
    """Wraps ops.sample; keeps, per call, each row's (temperature, top_k, top_p, seed, offset, token)."""

    def __init__(self, sample):
        self.sample, self.calls = sample, []

    def __call__(self, logits, temperature, top_k, top_p, seed, offset):
        ids, logprob = self.sample(logits, temperature, top_k, top_p, seed, offset)
        as_set = [round(x, 6) for x in temperature.tolist()], [round(x, 6) for x in top_p.tolist()]  # float32 -> 0.7
        self.calls.append(list(zip(as_set[0], top_k.tolist(), as_set[1], seed.tolist(), offset.tolist(), ids.tolist())))
        return ids, logprob


@pytest.fixture()
def recorder(monkeypatch) -> SampleRecorder:
    rec = SampleRecorder(model_runner.ops.sample)
    monkeypatch.setattr(model_runner.ops, "sample", rec)
    return rec


def test_each_row_gets_its_requests_parameters_seed_and_offset(tiny_model, tokenizer, recorder):
    engine = LLMEngine(tiny_model, tokenizer, EngineConfig(num_blocks=64, block_size=4, max_num_batched_tokens=64))
    prompts = [[0] + [2 + (5 * i + j) % 40 for j in range(6 + i)] for i in range(len(REQUESTS))]
    ids = {engine.add_request(p, params): (params, want) for p, (params, want) in zip(prompts, REQUESTS)}
    outputs = {}
    while engine.has_unfinished():
        outputs.update({o.request_id: o for o in engine.step() if isinstance(o, RequestOutput)})
    assert max(len(call) for call in recorder.calls) == len(REQUESTS), "the requests were never sampled together"
    rows_by_seed = defaultdict(list)
    for call in recorder.calls:
        for temperature, top_k, top_p, seed, offset, token in call:
            rows_by_seed[seed].append(((temperature, top_k, top_p), offset, token))
    assert len(rows_by_seed) == len(REQUESTS), f"seeds seen: {sorted(rows_by_seed)}"
    for sid, (params, want) in ids.items():
        rows = rows_by_seed[params.seed]
        assert [r[0] for r in rows] == [want] * MAX_TOKENS, f"request {sid} (seed {params.seed})"
        assert [r[1] for r in rows] == list(range(MAX_TOKENS)), "offset: the request's count of sampled tokens"
        assert [r[2] for r in rows] == outputs[sid].token_ids  # the row's draw is the request's token


def test_unseeded_requests_keep_one_engine_drawn_seed_each(tiny_model, tokenizer, recorder):
    config = EngineConfig(num_blocks=64, block_size=4, max_num_batched_tokens=64, seed=3)
    engine = LLMEngine(tiny_model, tokenizer, config)
    for i in range(3):
        engine.add_request([0, 4 + i, 9, 7], SamplingParams(temperature=1.0, max_tokens=MAX_TOKENS, ignore_eos=True))
    while engine.has_unfinished():
        engine.step()
    seeds = defaultdict(list)
    for call in recorder.calls:
        for *_, seed, offset, _token in call:
            seeds[seed].append(offset)
    assert len(seeds) == 3 and all(offsets == list(range(MAX_TOKENS)) for offsets in seeds.values()), dict(seeds)


@pytest.mark.parametrize("temperature", [0.7, 1.6])
def test_score_at_a_temperature_is_the_dense_log_softmax_of_logits_over_it(tiny_model, tokenizer, temperature):
    engine = LLMEngine(tiny_model, tokenizer, EngineConfig(num_blocks=64, block_size=4, max_num_batched_tokens=6))
    history, step = [0, 3, 9, 14, 2, 27, 8, 5], [5, 9, 13, 2, 7, 30, 31]
    sid = engine.add_sequence(history)
    result = engine.score(sid, step, keep=False, temperature=temperature)
    logits = tiny_model.compute_logits(tiny_model.forward_dense(history + step)).double()
    dense = torch.log_softmax(logits / temperature, -1)
    want = [float(dense[len(history) - 1 + i, t]) for i, t in enumerate(step)]
    assert result.token_logprobs == pytest.approx(want, abs=1e-4)
    assert result.step_nll == pytest.approx(-sum(want) / len(want), abs=1e-4)
    at_one = torch.log_softmax(logits, -1)
    assert max(abs(w - float(at_one[len(history) - 1 + i, t])) for i, (w, t) in enumerate(zip(want, step))) > 0.1


def test_scores_at_different_temperatures_in_one_step(tiny_model, tokenizer):
    """Two sequences scored in the same step at 0.7 and 1.0 (the runner groups rows by temperature),
    through a1.LLM.score too."""
    llm = LLM(Loaded(tiny_model, tokenizer, tiny_model.config), block_size=4, kv_cache_gb=0.001,
              max_num_batched_tokens=64)
    histories, step = ([0, 6, 11, 3, 19], [0, 21, 5, 17, 2, 9]), [4, 8, 15, 16, 23]
    engine = llm.engine
    sids = [engine.add_sequence(history) for history in histories]
    for sid, temperature in zip(sids, (0.7, 1.0)):
        engine.submit_score(sid, step, keep=False, temperature=temperature)
    results = [o for o in engine.step() if getattr(o, "seq_id", None) in sids]
    assert len(results) == 2, "both scores must come out of one step"
    for result, history, temperature in zip(sorted(results, key=lambda r: r.seq_id), histories, (0.7, 1.0)):
        dense = tiny_model.compute_logits(tiny_model.forward_dense(history + step)).double()
        lp = torch.log_softmax(dense / temperature, -1)
        want = [float(lp[len(history) - 1 + i, t]) for i, t in enumerate(step)]
        assert result.token_logprobs == pytest.approx(want, abs=1e-4), temperature
    via_llm = llm.score(histories[0], step, temperature=0.7)
    assert via_llm.token_logprobs == pytest.approx(min(results, key=lambda r: r.seq_id).token_logprobs, abs=1e-5)
