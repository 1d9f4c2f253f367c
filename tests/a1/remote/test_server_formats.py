"""The servers' formats as golden exchanges (tests/a1/remote/fixtures/: one file per server family and
version, written from what each server's source implements), replayed through the fault-injection
server: the engine is built against it (identification from the fixture's endpoints, the start-up
probes on the real in-process engine), every request a1 writes for the exchange must equal the
golden request, and its answer must come out of the engine as the golden outcome (tokens,
log-probs, finish and stop reasons, or an error naming the problem)."""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import pytest

from a1.engine.outputs import RequestOutput, ScoreResult
from a1.engine.sampling_params import SamplingParams
from a1.remote import RemoteBackend, RemoteProtocolError, RemoteRequestError
from remote_helpers import run_engine

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())  # -Infinity stands for a -inf log-prob


def build(server, tokenizer, fixture: dict) -> RemoteBackend:
    # a1 serve serves a pair on one port: OpenAI requests name the model; SGLang's /generate has no model field
    model = "tiny-target" if fixture["protocol"] == "openai" else None
    return RemoteBackend(server.url, tokenizer, "auto", model=model,
                         check_alignment=fixture.get("check_alignment", True))


def exchange_outcome(engine, tokenizer, exchange: dict):
    """What the engine makes of the exchange: its output, or the RemoteRequestError's cause."""
    try:
        if "tokens" in exchange:  # a score of `tokens` after `history`
            seq = engine.add_sequence(tokenizer.encode(exchange["history"], add_special_tokens=True))
            engine.submit_score(seq, tokenizer.encode(exchange["tokens"]), keep=False)
            (out,) = run_engine(engine)
            engine.free(seq)
            return out
        prompt = tokenizer.encode(exchange["prompt"], add_special_tokens=True)
        engine.add_request(prompt, SamplingParams(**exchange["params"]))
        (out,) = run_engine(engine)
        return out
    except RemoteRequestError as err:
        (failed,) = err.failed_requests
        return failed[3]


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_each_server_format_runs_through_the_engine(server, faults, char_tokenizer, path):
    fixture = load(path)
    faults.set("replay", fixture=fixture)
    if "refused" in fixture:
        with pytest.raises(RemoteProtocolError, match=fixture["refused"]):
            build(server, char_tokenizer, fixture)
        assert not faults.captured
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = build(server, char_tokenizer, fixture)
    for note in fixture.get("warns", []):
        assert any(note in str(w.message) for w in caught), (note, [str(w.message) for w in caught])
    replica = engine.replicas[0]
    assert (engine.protocol.name, replica.info.family) == (fixture["protocol"], fixture["family"])
    if "max_model_len" in fixture:  # SGLang: max_req_input_len + 1, below the context of 512
        assert engine.max_model_len == fixture["max_model_len"]
    for exchange in fixture["exchanges"]:
        before = len(faults.captured)
        out = exchange_outcome(engine, char_tokenizer, exchange)
        assert faults.captured[before:before + 1] == [exchange["request"]], exchange["name"]
        expect = exchange["expect"]
        if "error" in expect:
            assert isinstance(out, Exception), (exchange["name"], out)
            assert re.search(expect["error"], str(out), re.S), (exchange["name"], str(out))
            continue
        if "token_logprobs" in expect:
            assert isinstance(out, ScoreResult) and out.token_logprobs == expect["token_logprobs"], exchange["name"]
            continue
        assert isinstance(out, RequestOutput), (exchange["name"], out)
        completion = out.outputs[0]
        got = {"token_ids": out.token_ids, "logprobs": completion.logprobs, "finish_reason": completion.finish_reason,
               "stop_reason": completion.stop_reason, "text": completion.text}
        assert {k: got[k] for k in expect} == expect, exchange["name"]
    engine.close()


def test_minus_9999_is_minus_infinity_and_counts_as_one(server, faults, char_tokenizer):
    """A step holding a token of probability 0 scores an infinite NLL, as the embedded engine's does."""
    fixture = load(next(p for p in FIXTURES if p.stem == "vllm-0.10.2"))
    faults.set("replay", fixture=fixture)
    engine = build(server, char_tokenizer, fixture)
    score = next(e for e in fixture["exchanges"] if "tokens" in e)
    out = exchange_outcome(engine, char_tokenizer, score)
    assert out.token_logprobs[0] == -math.inf and out.step_nll == math.inf
    engine.close()
