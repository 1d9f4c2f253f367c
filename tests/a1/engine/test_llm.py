"""The vLLM-shaped offline API on the fake model."""
import pytest

import a1
from a1 import LLM, SamplingParams
from fake_lm import Loaded


@pytest.fixture()
def llm(tiny_model, tokenizer):
    return LLM(Loaded(tiny_model, tokenizer, tiny_model.config), block_size=4, kv_cache_gb=0.001, max_num_batched_tokens=32)


def test_generate_strings_and_token_ids(llm, tiny_model, tokenizer):
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    outs = llm.generate(["abc", [0, 5, 6, 7]], params)
    assert [o.prompt for o in outs] == ["abc", None]
    assert outs[0].prompt_token_ids == tokenizer.encode("abc", add_special_tokens=True)
    for out in outs:
        assert out.token_ids == tiny_model.greedy_reference(out.prompt_token_ids, 6)
        assert out.outputs[0].token_ids == out.token_ids and out.text == out.outputs[0].text
        assert out.finish_reason == "length" and out.logprobs is None
    single = llm.generate("abc", params)
    assert len(single) == 1 and single[0].token_ids == outs[0].token_ids
    assert llm.generate([], params) == []


def test_generate_chat_per_prompt_params_and_logprobs(llm, tiny_model, tokenizer):
    params = [SamplingParams(temperature=0, max_tokens=3, logprobs=True), SamplingParams(max_tokens=5, seed=7, ignore_eos=True)]
    outs = llm.generate(["hi", "yo"], params, chat=True, use_tqdm=True)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert outs[0].prompt_token_ids == tokenizer.encode(text)
    assert len(outs[0].logprobs) == len(outs[0].token_ids) and outs[1].logprobs is None
    assert len(outs[1].token_ids) == 5
    with pytest.raises(ValueError, match="sampling_params has 1 entries for 2 prompts"):
        llm.generate(["a", "b"], [SamplingParams()])
    with pytest.raises(ValueError, match="chat=True needs string prompts"):
        llm.generate([[0, 1, 2]], chat=True)
    with pytest.raises(TypeError, match="prompts\\[0\\]"):
        llm.generate([3.5])


def test_score_single_and_batched(llm, tiny_model):
    prompt, cont = [0, 4, 5, 6, 7, 8], [9, 10, 11]
    result = llm.score(prompt, cont)
    lp = tiny_model.dense_logprobs(prompt + cont)
    expected = [float(lp[len(prompt) - 1 + i, t]) for i, t in enumerate(cont)]
    assert result.token_logprobs == pytest.approx(expected, abs=1e-4)
    batched = llm.score([prompt, [0, 3]], [cont, [2, 2, 2, 2]])
    assert batched[0].token_logprobs == pytest.approx(expected, abs=1e-4) and batched[1].num_tokens == 4
    assert not llm.engine.seqs and llm.engine.block_manager.num_used_blocks == 0
    metrics = llm.get_metrics()
    assert metrics["tokens_scored"] == 3 + 3 + 4 and metrics["steps"] >= 2


def test_package_exports_and_bad_model():
    assert a1.SamplingParams is SamplingParams and a1.AsyncEngine.__name__ == "AsyncEngine"
    with pytest.raises(TypeError, match="model must be"):
        LLM(42)


def test_score_releases_every_block(llm, tiny_model):
    """The second pair copies the first one's computed partial block ([0]); the source was held until
    the next schedule(), which a finished score() never runs: one block stayed referenced."""
    results = llm.score([[0, 3], [0, 4]], [[5, 6], [7]])
    lp = tiny_model.dense_logprobs([0, 4, 7])
    assert results[1].token_logprobs == pytest.approx([float(lp[1, 7])], abs=1e-4)
    assert not llm.engine.seqs and llm.engine.block_manager.num_used_blocks == 0
