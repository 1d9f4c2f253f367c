"""LLM.generate / LLM.score refuse malformed arguments by name, before anything is queued."""
import pytest

from a1 import LLM, SamplingParams
from fake_lm import Loaded


@pytest.fixture()
def llm(tiny_model, tokenizer):
    return LLM(Loaded(tiny_model, tokenizer, tiny_model.config), block_size=4, kv_cache_gb=0.001, max_num_batched_tokens=32)


def test_generate_refuses_a_dict_of_sampling_params(llm):
    # was: "params must be SamplingParams, got str" (the dict iterated into its keys)
    with pytest.raises(TypeError, match=r"sampling_params must be a SamplingParams or a list of them, got dict"):
        llm.generate([[0, 1, 2]], sampling_params={"max_tokens": 3})
    assert not llm.engine.seqs and len(llm.generate([[0, 1, 2]], SamplingParams(max_tokens=3))[0].token_ids) <= 3


def test_score_refuses_text_and_flat_batched_continuations(llm):
    with pytest.raises(TypeError, match="prompt_token_ids must be token ids .* got a string"):
        llm.score("hello", " world")  # was: "5 prompts but 6 continuations"
    with pytest.raises(TypeError, match=r"continuation_token_ids\[0\] must be a list of token ids"):
        llm.score([[1, 2, 3], [4, 5]], [5, 6])  # was: "'int' object is not iterable"
    with pytest.raises(ValueError, match=r"prompt_token_ids\[0\] must hold 1 to"):
        llm.score([], [5, 6])
    assert not llm.engine.seqs and llm.engine.block_manager.num_used_blocks == 0
