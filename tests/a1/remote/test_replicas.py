"""One model on two in-process `a1 serve` replicas (each behind its own fault injector): a sequence
sticks to its replica, new sequences go to the least loaded one, a replica that fails for good is
taken out and its requests continue on the other with the same results, a request the server
refuses while it still answers fails without taking it out, and only when no replica is left does
a request fail. (The policy run with a replica process killed mid-run: test_remote_policy.py.)"""
from __future__ import annotations

import warnings

import pytest

import a1
from a1.engine.sampling_params import SamplingParams
from a1.remote import RemoteBackend, RemoteConfig, RemoteHTTPError, RemoteRequestError, RemoteUnavailableError
from remote_helpers import Faults, serve_with_faults

FAST = dict(generate_timeout=2.0, score_timeout=2.0, connect_timeout=0.5, max_retries=1, backoff=0.05)
PROMPTS = ["Name a prime.", "What is 2+3?", "Count: ", "Hi there"]


@pytest.fixture(scope="module")
def second_faults() -> Faults:
    return Faults()


@pytest.fixture(scope="module")
def second_server(char_models, second_faults):
    """A second replica of the conftest's server (the same char pair), with its own faults."""
    served = a1.LLM(char_models[0], draft=char_models[1], kv_cache_gb=0.02, seed=0)
    thread = serve_with_faults(served, second_faults)
    yield thread
    thread.stop()


@pytest.fixture
def replicas(server, faults, second_server, second_faults):
    second_faults.set(None)
    yield (server, faults), (second_server, second_faults)
    second_faults.set(None)


def engine_on(urls, tokenizer, **config) -> RemoteBackend:
    return RemoteBackend(urls, tokenizer, "sglang", model="tiny-target", check_alignment=False,
                         config=RemoteConfig(**{**FAST, **config}))


def generate_all(engine, tokenizer, seqs, params) -> dict:
    for seq in seqs:
        engine.add_request(seq_id=seq, params=params)
    outs = {}
    for _ in range(200):
        if not engine.has_unfinished():
            return outs
        outs.update((out.request_id, out) for out in engine.step())
    raise AssertionError("the engine did not finish")


def test_sequences_stick_to_their_replica_and_new_ones_go_to_the_least_loaded(replicas, char_tokenizer):
    (one, counts_one), (two, counts_two) = replicas
    counts_one.set("slow", delay=0.0)  # counts the requests each server sees
    counts_two.set("slow", delay=0.0)
    engine = engine_on([one.url, two.url], char_tokenizer)
    seqs = [engine.add_sequence(char_tokenizer.encode(p, add_special_tokens=True)) for p in PROMPTS]
    params = SamplingParams(temperature=0.8, max_tokens=6, seed=3)
    generate_all(engine, char_tokenizer, seqs, params)
    placed = {seq: engine.router.placement[seq].url for seq in seqs}
    assert sorted(placed.values()) == sorted([one.url, two.url] * 2)  # least loaded: two each
    assert (counts_one.seen, counts_two.seen) == (2, 2)
    generate_all(engine, char_tokenizer, seqs, params)  # a second step of each: on the same replica
    assert {seq: engine.router.placement[seq].url for seq in seqs} == placed
    assert (counts_one.seen, counts_two.seen) == (4, 4)
    child = engine.fork(seqs[0])
    assert engine.router.placement[child].url == placed[seqs[0]]  # a fork shares its parent's cached prefix
    engine.close()


def test_a_failed_replica_is_taken_out_and_its_requests_continue_on_the_other(replicas, char_tokenizer):
    (one, _), (two, broken) = replicas
    params = SamplingParams(temperature=0.8, max_tokens=6, seed=3, logprobs=True)
    reference = engine_on([one.url], char_tokenizer)
    seqs = [reference.add_sequence(char_tokenizer.encode(p, add_special_tokens=True)) for p in PROMPTS]
    expected = generate_all(reference, char_tokenizer, seqs, params)
    reference.close()
    engine = engine_on([one.url, two.url], char_tokenizer)
    seqs = [engine.add_sequence(char_tokenizer.encode(p, add_special_tokens=True)) for p in PROMPTS]
    broken.set("status", status=503)  # the second replica answers 503 to everything now
    with pytest.warns(UserWarning, match="is taken out of the run"):
        outs = generate_all(engine, char_tokenizer, seqs, params)
    assert sorted(outs) == sorted(seqs)  # every sequence produced once
    for seq in seqs:  # the same tokens and log-probs as on one healthy server (seeded requests)
        assert outs[seq].token_ids == expected[seq].token_ids
        assert outs[seq].outputs[0].logprobs == pytest.approx(expected[seq].outputs[0].logprobs, abs=1e-5)
    assert engine.metrics.num_failovers >= 2 and engine.metrics.num_failures == 0
    assert [r.alive for r in engine.replicas] == [True, False]
    assert all(engine.router.placement[s].url == one.url for s in seqs)
    broken.set("slow", delay=0.0)  # back, but out for the rest of the run: new sequences go to the live one
    engine.add_request(char_tokenizer.encode("Again", add_special_tokens=True), params)
    assert len(generate_all(engine, char_tokenizer, [], params)) == 1 and broken.seen == 0
    engine.close()


def test_a_server_that_refuses_a_request_but_answers_stays_in(replicas, char_tokenizer):
    """HTTP 500 from a server that still answers a GET is the request's fault: no fail-over."""
    (one, refusing), (two, _) = replicas
    engine = engine_on([one.url, two.url], char_tokenizer)
    refusing.set("status", kinds=("gen",), status=500)
    engine.add_request(char_tokenizer.encode("Hi", add_special_tokens=True), SamplingParams(max_tokens=4))
    with pytest.raises(RemoteRequestError) as info:
        generate_all(engine, char_tokenizer, [], None)
    (failed,) = info.value.failed_requests
    assert isinstance(failed[3], RemoteHTTPError) and failed[3].status == 500
    assert all(r.alive for r in engine.replicas) and engine.metrics.num_failovers == 0
    engine.close()


def test_a_request_fails_only_when_no_replica_is_left(replicas, char_tokenizer):
    (one, first), (two, second) = replicas
    engine = engine_on([one.url, two.url], char_tokenizer)
    first.set("status", status=503)
    second.set("status", status=503)
    engine.add_request(char_tokenizer.encode("Hi", add_special_tokens=True), SamplingParams(max_tokens=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the first replica taken out
        with pytest.raises(RemoteRequestError) as info:
            generate_all(engine, char_tokenizer, [], None)
    (failed,) = info.value.failed_requests
    assert isinstance(failed[3], RemoteHTTPError) and failed[3].status == 503
    assert sum(r.alive for r in engine.replicas) == 1  # the last one is never taken out
    engine.close()


def test_an_unreachable_replica_is_left_out_at_start_up(server, char_tokenizer):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.warns(UserWarning, match=f"left out of the run: cannot reach the server at {dead}"):
        engine = engine_on([dead, server.url], char_tokenizer)
    assert [r.url for r in engine.replicas] == [server.url]
    engine.close()
    with pytest.raises(RemoteUnavailableError, match="cannot reach"):
        engine_on([dead], char_tokenizer)


@pytest.mark.parametrize("urls, message", [
    ([], "non-empty list"), (["ftp://x"], "http"), (["http://a:1", "http://a:1/"], "more than once"),
    ("localhost:8000", "http"), (42, "URL"),
])
def test_urls_are_checked(char_tokenizer, urls, message):
    with pytest.raises(ValueError, match=message):
        RemoteBackend(urls, char_tokenizer)
