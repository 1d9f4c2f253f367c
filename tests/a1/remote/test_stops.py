"""Where a remote step ends in token space: the engine's stop rules replayed over the returned ids
(a1.remote.stops.trim), including stop strings completed across tokens or inside a token."""
from __future__ import annotations

import sys
from pathlib import Path

from a1.engine.sampling_params import SamplingParams
from a1.remote.stops import trim

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from fake_lm import FakeTokenizer  # noqa: E402

# 2.. are single characters; 40 is "\n\n" as one token, 41 ".\n\nSo" (the stop inside a token)
TOKENIZER = FakeTokenizer(48, {40: "\n\n", 41: ".\n\nSo", 42: "\n"})
A, B, C = 2, 3, 4  # "a", "b", "c"
EOS = 1


def cut(generated, max_model_len=100, history=(5, 6, 7), **params):
    params = SamplingParams(**{"max_tokens": 16, "stop": ["\n\n"], "include_stop_str_in_output": True, **params})
    return trim(TOKENIZER, [EOS], list(history), list(generated), params, max_model_len)


def test_the_step_ends_at_the_token_completing_the_stop_string():
    result = cut([A, B, 40, C, C])
    assert (result.num_tokens, result.finish_reason, result.stop_reason, result.text) == (3, "stop", "\n\n", "ab\n\n")
    result = cut([A, 42, 42, C])  # completed across two tokens
    assert result.num_tokens == 3 and result.text == "a\n\n"
    result = cut([A, 41, C])  # inside a token: the token stays whole, the text is cut after the stop
    assert result.num_tokens == 2 and result.text == "a.\n\n"
    assert cut([A, 41, C], include_stop_str_in_output=False).text == "a."


def test_min_tokens_eos_and_limits():
    assert cut([40, A, 40, C], min_tokens=2).num_tokens == 3  # the first stop came before min_tokens
    result = cut([A, EOS, B])
    assert (result.num_tokens, result.finish_reason, result.stop_reason) == (2, "stop", EOS)
    assert cut([A, EOS, B], ignore_eos=True, max_tokens=3).finish_reason == "length"
    assert cut([A, B, C, A], max_tokens=3).num_tokens == 3
    result = cut([A, B, C, A], max_model_len=5)  # 3 history tokens + 2 reach max_model_len
    assert (result.num_tokens, result.finish_reason) == (2, "length")
    result = cut([A, B])  # no rule fired: the server stopped for a reason of its own
    assert (result.num_tokens, result.finish_reason) == (2, None)
