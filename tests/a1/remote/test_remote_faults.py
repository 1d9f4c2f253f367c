"""Faults of the server side: timeouts fire and retries stay bounded, malformed / truncated JSON
and missing log-probs give clear errors, misaligned prompt log-probs are corrected or refused at
start-up, and an unreachable server is reported at once."""
from __future__ import annotations

import socket
import time

import pytest

from a1.engine.sampling_params import SamplingParams
from a1.remote import (
    RemoteAlignmentError, RemoteConfig, RemoteBackend, RemoteHTTPError, RemoteProtocolError, RemoteRequestError,
    RemoteUnavailableError,
)

FAST = dict(generate_timeout=0.5, score_timeout=0.5, connect_timeout=0.5, max_retries=2, backoff=0.05)


def engine_for(server, tokenizer, protocol="openai", check_alignment=False, **config):
    return RemoteBackend(server.url, tokenizer, protocol, model="tiny-target", check_alignment=check_alignment,
                        config=RemoteConfig(**{**FAST, **config}))


def failure_of(engine, submit) -> BaseException:
    """The cause of the RemoteRequestError the next steps raise after submit(engine)."""
    submit(engine)
    with pytest.raises(RemoteRequestError) as info:
        for _ in range(50):
            engine.step()
    (failed,) = info.value.failed_requests
    assert failed[0] is engine and not engine.has_unfinished() and not engine.seqs  # reset after the failure
    return failed[3]


def generate(engine):
    engine.add_request([2, 3, 4], SamplingParams(max_tokens=4, temperature=0.0))


def score(engine):
    engine.submit_score(engine.add_sequence([2, 3, 4]), [5, 6, 7])


def test_slow_answers_time_out_and_retries_are_bounded(server, faults, char_tokenizer):
    engine = engine_for(server, char_tokenizer)
    faults.set("slow", kinds=("gen",), delay=3.0)
    start = time.monotonic()
    cause = failure_of(engine, generate)
    elapsed = time.monotonic() - start
    assert isinstance(cause, RemoteUnavailableError)
    assert "no answer within 0.5 s" in str(cause) and "after 3 attempts" in str(cause)
    assert faults.seen == 3 and elapsed < 2.5  # 3 timeouts of 0.5 s plus backoffs of 0.05 + 0.1 s
    faults.set("slow", kinds=("gen",), delay=0.2)  # slow but within the timeout: answered
    engine.add_request([2, 3, 4], SamplingParams(max_tokens=4, temperature=0.0))
    assert len(engine.step()) == 1 and engine.metrics.num_retries == 0
    engine.close()


@pytest.mark.parametrize("mode", ["malformed", "truncated"])
def test_malformed_or_truncated_json_is_a_clear_error(server, faults, char_tokenizer, mode):
    engine = engine_for(server, char_tokenizer)
    faults.set(mode)
    cause = failure_of(engine, generate)
    assert isinstance(cause, RemoteProtocolError) and "not valid JSON" in str(cause)
    assert faults.seen == 1  # an answer that is not JSON is not retried
    engine.close()


@pytest.mark.parametrize("protocol", ["openai", "sglang"])
def test_fewer_logprobs_than_tokens_is_detected(server, faults, char_tokenizer, protocol):
    engine = engine_for(server, char_tokenizer, protocol)
    faults.set("fewer", kinds=("score",))
    cause = failure_of(engine, score)
    assert isinstance(cause, RemoteProtocolError) and "log-probs for" in str(cause)
    engine.close()


@pytest.mark.parametrize("status, attempts", [(503, 3), (400, 1)])
def test_http_errors_retry_only_when_transient(server, faults, char_tokenizer, status, attempts):
    engine = engine_for(server, char_tokenizer)
    faults.set("status", kinds=("gen",), status=status)
    cause = failure_of(engine, generate)
    assert isinstance(cause, RemoteHTTPError) and cause.status == status and "injected failure" in str(cause)
    assert faults.seen == attempts
    engine.close()


@pytest.mark.parametrize("protocol", ["openai", "sglang"])
def test_misaligned_prompt_logprobs_are_corrected_or_refused(server, faults, char_tokenizer, local_pair, protocol):
    faults.set("shift", kinds=("score",))  # every value filed one position early: found and corrected
    with pytest.warns(UserWarning, match="off; corrected"):
        engine = engine_for(server, char_tokenizer, protocol, check_alignment=True)
    assert engine.protocol.shift == -1  # token i's value read at position i - 1
    prompt, step = [0, 20, 21, 22, 23], [24, 25, 26]
    assert engine.score(engine.add_sequence(prompt), step).token_logprobs == pytest.approx(
        local_pair.score(prompt, step).token_logprobs, abs=1e-4)
    engine.close()
    faults.set("garbage", kinds=("score",))
    with pytest.raises(RemoteAlignmentError, match="refusing this server"):
        engine_for(server, char_tokenizer, protocol, check_alignment=True)


def test_an_unreachable_server_is_reported_at_once(char_tokenizer):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(RemoteUnavailableError, match="cannot reach the server"):
        RemoteBackend(f"http://127.0.0.1:{port}", char_tokenizer, config=RemoteConfig(**FAST))
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("field, value", [
    ("generate_timeout", 0), ("score_timeout", float("inf")), ("connect_timeout", True), ("backoff", "1"),
    ("max_retries", -1), ("max_retries", 1.5), ("max_generations", 0), ("api_key", ""),
])
def test_the_config_refuses_a_bad_value_by_name(field, value):
    """What `a1 eval` passes from its timeout / retry flags is checked here, naming the field."""
    with pytest.raises(ValueError, match=field):
        RemoteConfig(**{field: value})
