"""validation.py: bad requests are refused before anything is queued, with errors naming the argument."""
import pytest

from a1.engine import EngineConfig, LLMEngine, SamplingParams
from a1.engine.validation import check_params, check_score, check_sequence, check_tokens, params_per_prompt, score_pairs


def test_params_per_prompt():
    p = SamplingParams(max_tokens=3)
    assert params_per_prompt(None, 2) == [SamplingParams()] * 2 and params_per_prompt(p, 3) == [p] * 3
    assert params_per_prompt((p, p), 2) == [p, p]
    # a dict was iterated into its keys: "params must be SamplingParams, got str"
    with pytest.raises(TypeError, match=r"sampling_params must be a SamplingParams or a list of them, got dict \(build one"):
        params_per_prompt({"max_tokens": 3}, 1)
    with pytest.raises(TypeError, match="sampling_params must be a SamplingParams or a list of them, got str"):
        params_per_prompt("greedy", 1)
    with pytest.raises(TypeError, match=r"sampling_params\[1\] must be SamplingParams, got dict"):
        params_per_prompt([p, {"max_tokens": 3}], 2)
    with pytest.raises(ValueError, match="sampling_params has 1 entries for 2 prompts"):
        params_per_prompt([p], 2)


def test_score_pairs():
    assert score_pairs([1, 2], [3]) == (True, [[1, 2]], [[3]])
    assert score_pairs([[1], (2, 3)], [[4], [5]]) == (False, [[1], [2, 3]], [[4], [5]])
    assert score_pairs([], []) == (False, [], [])
    assert score_pairs([], [3]) == (True, [[]], [[3]])  # one pair with an empty prompt: check_sequence refuses it
    # text was split into characters: "5 prompts but 6 continuations"
    with pytest.raises(TypeError, match="prompt_token_ids must be token ids .* got a string; tokenize it first"):
        score_pairs("hello", " world")
    with pytest.raises(TypeError, match="continuation_token_ids must be token ids .* got a string"):
        score_pairs([1, 2], " world")
    # a batch of prompts with one flat continuation: "'int' object is not iterable"
    with pytest.raises(TypeError, match=r"continuation_token_ids\[0\] must be a list of token ids \(a batch takes one list per pair\), got 5"):
        score_pairs([[1, 2, 3], [4, 5]], [5, 6])
    with pytest.raises(TypeError, match="continuation_token_ids must be a list of token ids when prompt_token_ids is one"):
        score_pairs([1, 2, 3], [[5], [6]])
    with pytest.raises(ValueError, match="2 prompts but 1 continuations"):
        score_pairs([[1], [2]], [[3]])
    with pytest.raises(TypeError, match="prompt_token_ids must be a list .* got int"):
        score_pairs(7, [1])


def test_token_and_score_checks_name_the_argument():
    assert check_tokens((1, 2), 10) == [1, 2] and check_tokens(range(3), 10) == [0, 1, 2]
    with pytest.raises(TypeError, match="prompt must be a list of token ids, got str"):
        check_tokens("abc", 10, "prompt")
    with pytest.raises(TypeError, match="prompt must be a list of token ids, got int"):
        check_tokens(5, 10, "prompt")
    with pytest.raises(ValueError, match=r"prompt must hold ints in \[0, 10\), got True"):
        check_tokens([1, True], 10, "prompt")
    with pytest.raises(ValueError, match="prompt must hold 1 to 7 tokens, got 8"):
        check_sequence(list(range(8)), 10, 8, "prompt")
    # scoring temperatures in the kernels' float32: 0, subnormal and overflowing values are refused
    for bad in (0.0, -1.0, 1e-40, 1e-6, 1e39, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature must be"):
            check_score(3, [1], bad, 10, 8)
    assert check_score(3, [1], 1e-5, 10, 8) == [1] and check_score(3, [1], 3e38, 10, 8) == [1]
    with pytest.raises(ValueError, match="scoring 6 tokens after 3 exceeds max_model_len 8"):
        check_score(3, [1] * 6, 1.0, 10, 8)
    with pytest.raises(TypeError, match=r"params must be SamplingParams, got dict \(build one"):
        check_params({"max_tokens": 3}, 10)
    with pytest.raises(ValueError, match=r"params\.stop_token_ids must hold ints in \[0, 10\), got 12"):
        check_params(SamplingParams(stop_token_ids=[12]), 10)


def test_engine_binds_its_limits(tiny_model, tokenizer):
    engine = LLMEngine(tiny_model, tokenizer, EngineConfig(num_blocks=4, block_size=4))
    vocab = tiny_model.config.vocab_size
    with pytest.raises(ValueError, match=rf"prompt must hold ints in \[0, {vocab}\)"):
        engine.check_request([0, vocab], SamplingParams())
    with pytest.raises(ValueError, match="token_ids must hold 1 to 15 tokens, got 16"):
        engine.add_sequence([0] * 16)
    with pytest.raises(TypeError, match="params must be SamplingParams, got dict"):
        engine.add_request([0, 1], {})  # an empty dict was taken as "no params" (falsy)
    assert not engine.seqs and not engine.has_unfinished()
