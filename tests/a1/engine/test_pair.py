"""Draft and target in one engine: one KV budget, one stepping loop, per-model sequences, and the
seams a step-level policy needs (stops in token space, no history copies, self-mode scores)."""
from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import pytest
import torch

import a1
from a1.engine import AsyncEngine, SamplingParams, split_kv_budget
from a1.engine.pair import PairEngine
from fake_lm import FakeConfig, FakeTokenizer, TinyLM


def loaded(model, tokenizer, name):
    return SimpleNamespace(model=model, tokenizer=tokenizer, source=name)


@pytest.fixture(scope="module")
def draft_model() -> TinyLM:
    return TinyLM(FakeConfig(hidden_size=16, intermediate_size=32, num_layers=1), seed=7)


def test_pair_pools_share_one_budget(tiny_model, draft_model, tokenizer):
    llm = a1.LLM(loaded(tiny_model, tokenizer, "t"), draft=loaded(draft_model, tokenizer, "d"), kv_cache_gb=0.001)
    target, draft = llm.pair.target, llm.pair.draft
    assert not llm.self_mode and target is not draft
    budget = int(0.001 * (1 << 30))
    per_token = [tiny_model.bytes_per_token(), draft_model.bytes_per_token()]
    expected = split_kv_budget(budget, per_token, 16)
    assert [target.block_manager.num_blocks, draft.block_manager.num_blocks] == expected
    assert expected[0] * 16 * sum(per_token) <= budget  # both pools together fit the one budget
    assert target.max_model_len == draft.max_model_len


@pytest.mark.parametrize("draft", ["self", None, "same"])
def test_self_mode_loads_one_model_and_one_pool(tiny_model, tokenizer, draft):
    target = loaded(tiny_model, tokenizer, "t")
    llm = a1.LLM(target, draft=target if draft == "same" else draft, kv_cache_gb=0.001)
    assert llm.self_mode and llm.pair.draft is llm.pair.target and llm.pair.engines == (llm.engine,)


def test_mismatched_vocabularies_are_refused_naming_both_models(tiny_model, tokenizer):
    other = FakeTokenizer(pieces={9: "#"})
    with pytest.raises(ValueError, match=r"draft 'd' and target 't'.*first differing id is 9"):
        a1.LLM(loaded(tiny_model, tokenizer, "t"), draft=loaded(TinyLM(seed=3), other, "d"))
    small = TinyLM(FakeConfig(vocab_size=40), seed=3)
    with pytest.raises(ValueError, match="embedding rows"):
        a1.LLM(loaded(tiny_model, tokenizer, "t"), draft=loaded(small, FakeTokenizer(40), "d"))


def test_one_step_runs_both_models_and_outputs_name_their_engine(tiny_model, draft_model, tokenizer):
    pair = PairEngine.build(tiny_model, tokenizer, draft_model, tokenizer)
    params = SamplingParams(temperature=0, max_tokens=1)
    t_id = pair.target.add_request([3, 4, 5], params)
    d_id = pair.draft.add_request([3, 4, 5], params)
    outs = pair.step()
    assert {(engine is pair.target, out.request_id) for engine, out in outs} == {(True, t_id), (False, d_id)}
    assert pair.target.metrics.num_steps == pair.draft.metrics.num_steps == 1
    assert outs[0][1].token_ids == tiny_model.greedy_reference([3, 4, 5], 1)
    assert outs[1][1].token_ids == draft_model.greedy_reference([3, 4, 5], 1)


def test_a_step_ends_in_token_space_at_its_stop_string(tiny_model, tokenizer):
    """The output ends with the token completing the stop string and the kept sequence holds
    nothing after it, so the policy's step boundary is the output's last token."""
    engine = a1.LLM(loaded(tiny_model, tokenizer, "t"), kv_cache_gb=0.001).engine
    prompt = [5, 9, 13]
    greedy = tiny_model.greedy_reference(prompt, 12)
    stop = tokenizer.decode(greedy[3:5])  # a two-token stop string
    end = next(k for k in range(1, 13) if stop in tokenizer.decode(greedy[:k]))  # the completing token
    seq = engine.add_sequence(prompt)
    params = SamplingParams(temperature=0, max_tokens=12, stop=stop, ignore_eos=True)
    engine.add_request(seq_id=seq, params=params, commit=False)
    out = _run(engine)
    assert out.outputs[0].stop_reason == stop and out.finish_reason == "stop"
    assert out.token_ids == greedy[:end]  # ends with the token that completes the stop string
    assert engine.token_ids(seq) == prompt + out.token_ids
    assert out.prompt_token_ids is None and out.num_prompt_tokens == len(prompt)  # kept: no copy
    engine.truncate(seq, len(prompt))
    assert engine.token_ids(seq) == prompt


def _run(engine):
    while True:
        for out in engine.step():
            return out


def test_self_mode_scores_from_generation_logprobs_equal_score(tiny_model, tokenizer):
    llm = a1.LLM(loaded(tiny_model, tokenizer, "t"), kv_cache_gb=0.001)
    prompt = [4, 8, 15, 16]
    out = llm.generate([prompt], SamplingParams(temperature=0.8, max_tokens=10, seed=3, logprobs=True))[0]
    scored = llm.score(prompt, out.token_ids)
    assert torch.allclose(torch.tensor(out.logprobs), torch.tensor(scored.token_logprobs), atol=1e-4)
    assert math.isclose(-sum(out.logprobs) / len(out.logprobs), scored.step_nll, rel_tol=1e-4)


def test_is_live_and_abort_through_the_scheduler(tiny_model, tokenizer):
    engine = a1.LLM(loaded(tiny_model, tokenizer, "t"), kv_cache_gb=0.001).engine
    seq = engine.add_sequence([3, 4, 5])
    engine.add_request(seq_id=seq, params=SamplingParams(max_tokens=50))
    engine.step()
    assert engine.is_live(seq) and engine.scheduler.running
    engine.abort(seq)
    assert not engine.is_live(seq) and not engine.scheduler.running and engine.block_manager.num_used_blocks == 0
    with pytest.raises(KeyError, match="not a live sequence"):
        engine.abort(seq)


def test_async_engine_exposes_both_models(tiny_model, draft_model, tokenizer):
    pair = PairEngine.build(tiny_model, tokenizer, draft_model, tokenizer)

    async def main():
        async with AsyncEngine(pair) as engine:
            params = SamplingParams(temperature=0, max_tokens=4)
            t_seq, d_seq = await engine.target.add_sequence([6, 7, 8]), await engine.draft.add_sequence([6, 7, 8])
            t_out, d_out = await asyncio.gather(
                engine.target.generate(seq_id=t_seq, params=params), engine.draft.generate(seq_id=d_seq, params=params)
            )
            score = await engine.target.score(t_seq, d_out.token_ids, keep=False)
            return t_out, d_out, score

    t_out, d_out, score = asyncio.run(main())
    assert t_out.token_ids == tiny_model.greedy_reference([6, 7, 8], 4)
    assert d_out.token_ids == draft_model.greedy_reference([6, 7, 8], 4)
    dense = tiny_model.dense_logprobs([6, 7, 8] + t_out.token_ids + d_out.token_ids)
    history = 3 + len(t_out.token_ids)
    expected = [float(dense[history - 1 + i, t]) for i, t in enumerate(d_out.token_ids)]
    assert torch.allclose(torch.tensor(score.token_logprobs), torch.tensor(expected), atol=1e-4)
