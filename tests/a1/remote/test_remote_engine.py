"""RemoteBackend (a1.remote's public name of a remote model) against an in-process a1 serve of the tiny character pair: the same tokens,
log-probs and stop decisions as the embedded engine, over both protocols (and llama.cpp's echo
dialect, emulated), and LLMEngine's sequence bookkeeping."""
from __future__ import annotations

import math

import pytest

from a1.engine.outputs import RequestOutput, ScoreResult
from a1.engine.sampling_params import SamplingParams
from a1.remote import RemoteBackend
from remote_helpers import run_engine

PROTOCOLS = ["openai", "sglang"]


def remote(server, tokenizer, protocol, model="tiny-target", **kwargs):
    return RemoteBackend(server.url, tokenizer, protocol, model=model, **kwargs)


def local_generate(local_pair, prompt, params):
    engine = local_pair.pair.target
    seq = engine.add_sequence(prompt)
    engine.add_request(seq_id=seq, params=params)
    out = [o for o in run_engine(engine) if isinstance(o, RequestOutput)][0]
    engine.free(seq)
    return out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_generation_and_scores_match_the_embedded_engine(server, char_tokenizer, local_pair, protocol):
    engine = remote(server, char_tokenizer, protocol)
    assert engine.protocol.name == protocol and engine.alignment == "aligned"
    prompt = char_tokenizer.encode("What is 2+3?", add_special_tokens=True)
    for params in (SamplingParams(temperature=0.0, max_tokens=12, logprobs=True),
                   SamplingParams(temperature=0.8, top_p=0.9, max_tokens=12, seed=7, logprobs=True)):
        seq = engine.add_sequence(prompt)
        assert engine.add_request(seq_id=seq, params=params) == seq
        (out,) = run_engine(engine)
        expected = local_generate(local_pair, prompt, params)
        assert out.token_ids == expected.token_ids and out.text == expected.text
        assert out.outputs[0].finish_reason == expected.outputs[0].finish_reason
        assert out.logprobs == pytest.approx(expected.logprobs, abs=1e-4)
        assert engine.token_ids(seq) == prompt + expected.token_ids and out.num_prompt_tokens == len(prompt)
        step = char_tokenizer.encode(" It is five.")
        engine.submit_score(seq, step, keep=False)
        (result,) = run_engine(engine)
        reference = local_pair.score(prompt + expected.token_ids, step)
        assert isinstance(result, ScoreResult) and result.seq_id == seq
        assert result.token_logprobs == pytest.approx(reference.token_logprobs, abs=1e-4)
        assert result.step_nll == pytest.approx(reference.step_nll, abs=1e-4)
        assert engine.num_tokens(seq) == len(prompt) + len(expected.token_ids)  # keep=False rolled back
        engine.free(seq)
    assert engine.metrics.as_dict()["generations"] == 2 and engine.metrics.num_scores == 2
    engine.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stop_strings_end_the_step_where_the_embedded_engine_ends_it(server, char_tokenizer, local_pair, protocol):
    """The step ends at the token completing the stop string, whatever the server returned."""
    engine = remote(server, char_tokenizer, protocol)
    prompt = char_tokenizer.encode("Count: ", add_special_tokens=True)
    free_run = local_generate(local_pair, prompt, SamplingParams(temperature=0.0, max_tokens=24))
    stop_text = free_run.text[5:7]  # a string that occurs mid-output
    for include in (True, False):
        params = SamplingParams(temperature=0.0, max_tokens=24, stop=[stop_text], include_stop_str_in_output=include)
        expected = local_generate(local_pair, prompt, params)
        assert expected.outputs[0].stop_reason == stop_text and len(expected.token_ids) < len(free_run.token_ids)
        engine.add_request(prompt, params)  # a released one-shot request
        (out,) = run_engine(engine)
        assert (out.token_ids, out.text) == (expected.token_ids, expected.text)
        assert out.outputs[0].stop_reason == stop_text and out.finish_reason == "stop"
        assert out.prompt_token_ids == prompt and not engine.is_live(out.request_id)
    engine.close()


def test_bookkeeping_follows_the_llm_engine(server, char_tokenizer):
    engine = remote(server, char_tokenizer, "sglang", check_alignment=False)
    seq = engine.add_sequence([2, 3, 4, 5])
    engine.append(seq, [6, 7])
    engine.truncate(seq, 3)
    assert engine.token_ids(seq) == [2, 3, 4] and engine.num_tokens(seq) == 3
    child = engine.fork(seq)
    assert engine.token_ids(child) == [2, 3, 4] and child != seq
    engine.free(child)
    assert not engine.is_live(child)
    engine.submit_score(seq, [], keep=True)
    (empty,) = engine.step()
    assert empty.token_logprobs == [] and math.isnan(empty.step_nll)
    engine.submit_score(seq, [8, 9], keep=True)
    with pytest.raises(RuntimeError, match="busy"):
        engine.append(seq, [1])
    (kept,) = run_engine(engine)
    assert len(kept.token_logprobs) == 2 and engine.token_ids(seq) == [2, 3, 4, 8, 9]
    engine.add_request(seq_id=seq, params=SamplingParams(max_tokens=3, temperature=0.0))
    engine.abort(seq)  # its answer is discarded
    assert not engine.is_live(seq) and run_engine(engine) == []
    with pytest.raises(KeyError):
        engine.free(seq)
    with pytest.raises(ValueError, match="token_ids must hold ints"):
        engine.add_sequence([2, 10_000])
    with pytest.raises(ValueError, match="token_ids must hold 1 to"):
        engine.add_sequence([2] * engine.max_model_len)
    other = engine.add_sequence([2, 3])
    with pytest.raises(ValueError, match="temperature must be 1.0"):
        engine.submit_score(other, [4], temperature=0.5)
    with pytest.raises(ValueError, match="give prompt_token_ids or seq_id"):
        engine.add_request(params=SamplingParams())
    engine.close()


def test_llama_cpp_echo_dialect_is_read_by_counting_back(server, faults, char_tokenizer, local_pair):
    """A server that only echoes log-probs and names tokens by text (llama-cpp-python's answers)."""
    faults.set("echo_only")
    engine = remote(server, char_tokenizer, "openai")
    assert engine.protocol.dialect == "echo" and engine.alignment == "aligned"
    prompt = char_tokenizer.encode("Name a prime.", add_special_tokens=True)
    params = SamplingParams(temperature=0.0, max_tokens=10, logprobs=True)
    engine.add_request(prompt, params)
    (out,) = run_engine(engine)
    expected = local_generate(local_pair, prompt, params)
    assert out.token_ids == expected.token_ids
    seq = engine.add_sequence(prompt)
    step = char_tokenizer.encode(" 7 is prime")
    reference = local_pair.score(prompt, step)
    assert engine.score(seq, step).token_logprobs == pytest.approx(reference.token_logprobs, abs=1e-4)
    engine.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_generation_logprobs_scaled_by_the_temperature_are_re_read(server, faults, char_tokenizer, local_pair,
                                                                   protocol):
    """SGLang returns log_softmax(logits / T) as generation log-probs (unless started with
    SGLANG_RETURN_ORIGINAL_LOGPROB=1); the start-up probe at T = 1 cannot see it. The first
    generation with log-probs at T = 0.7 probes that setting, finds the server scaled, and every
    step's log-probs come from a scoring request instead: the raw ones, as the embedded engine's."""
    faults.set("scaled", kinds=("gen",))
    engine = remote(server, char_tokenizer, protocol)
    assert engine.alignment == "aligned"  # T = 1: scaled and raw agree
    prompt = char_tokenizer.encode("Name a prime.", add_special_tokens=True)
    params = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=10, seed=5, logprobs=True)
    expected = local_generate(local_pair, prompt, params)
    for attempt in range(2):  # the probe runs once per setting
        if attempt == 0:
            with pytest.warns(UserWarning, match="SGLANG_RETURN_ORIGINAL_LOGPROB=1"):
                engine.add_request(prompt, params)
                (out,) = run_engine(engine)
        else:
            engine.add_request(prompt, params)
            (out,) = run_engine(engine)
        assert out.token_ids == expected.token_ids
        assert out.logprobs == pytest.approx(expected.logprobs, abs=1e-4)
    assert engine.metrics.num_tokens_rescored == 2 * len(expected.token_ids)
    engine.close()
    faults.set(None)  # a raw server at that setting: its own log-probs, nothing re-read
    engine = remote(server, char_tokenizer, protocol)
    engine.add_request(prompt, params)
    (out,) = run_engine(engine)
    assert out.logprobs == pytest.approx(expected.logprobs, abs=1e-4) and engine.metrics.num_tokens_rescored == 0
    engine.close()
