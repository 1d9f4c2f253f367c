"""Integration with llama.cpp's server (llama-cpp-python, `python -m llama_cpp.server`) serving the
bundled SmolLM2 GGUF: the client finds that it takes text prompts only, echoes prompt log-probs and
pairs them with the right tokens only after a leading BOS; its step scores agree with the embedded
engine's on the same GGUF; generated steps end in token space; histories that would reach the
server as other tokens are refused. Skipped, with the reason printed, where llama_cpp is not
importable.

Tolerance: both sides use the same Q4_1 weights, but we dequantize them to fp32 and compute in
fp32, while llama.cpp multiplies them with activations quantized to 8 bits (Q8_1 blocks of 32) and
keeps its KV cache in fp16; that noise reaches the logits of the last of 30 layers. Measured on
this GGUF over 288 tokens of steps the model drafted itself (what A1 scores): per-token
|difference| median 0.026 nats, 99th percentile 0.27, max 0.30; per-step mean NLL |difference| at
most 0.03 (perplexity within 3.1 %). The test allows 0.5 nats per token and 0.1 nats on a step's
mean NLL (perplexity within 10.5 %), far below what a one-position misalignment gives (its median
per-token difference is checked to exceed 1 nat). Improbable tokens differ more (up to 1.2 nats
seen on forced text: the logit noise cancels in log p only for likely tokens), so the steps
scored here are drafted by the model, not written by hand."""
from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
import warnings

import pytest

from a1.engine.sampling_params import SamplingParams
from a1.models.registry import BUILTIN_MODELS
from a1.policy import generate
from a1.remote import RemoteBackend, RemoteLLM, RemoteRequestError
from policy_checks import check_result
from remote_helpers import fixed_calibrator
from serve_helpers import get

MODEL = "smollm2-135m"
TOKEN_TOL, STEP_TOL = 0.5, 0.1


def _reason() -> str:
    """Why the tests cannot run ("" when they can): llama_cpp.server must import (checked in a
    child process: importing llama_cpp opens files this process would keep)."""
    check = subprocess.run([sys.executable, "-c", "import llama_cpp.server"], capture_output=True, text=True,
                           timeout=120)
    if check.returncode == 0:
        return ""
    last = (check.stderr.strip().splitlines() or ["?"])[-1]
    reason = f"llama-cpp-python[server] is not importable ({last}): pip install 'llama-cpp-python[server]'"
    print(f"\nskipping the llama.cpp integration tests: {reason}")
    return reason


REASON = _reason()
pytestmark = pytest.mark.skipif(bool(REASON), reason=REASON or "llama_cpp importable")


class LlamaServer:
    """`python -m llama_cpp.server` serving the bundled GGUF on 127.0.0.1 (port: a free one, or the
    given one to restart a server at the same URL) with a context of n_ctx tokens."""

    def __init__(self, port: int = 0, n_ctx: int = 2048) -> None:
        if not port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        gguf = str(BUILTIN_MODELS[MODEL].find())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1", "--port", str(port),
             "--logits_all", "true", "--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "1",
             "--verbose", "false"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}: "
                                       f"{self.proc.stderr.read()[-2000:]}")
                try:
                    if get(self.url + "/v1/models", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not answer within 120 s")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def llama_server(smollm2_llm):
    server = LlamaServer()
    yield server.url, server.proc
    server.stop()


@pytest.fixture(scope="module")
def llama_draft_server(smollm2_llm):
    """A second server of the same GGUF, as the draft of a remote pair."""
    server = LlamaServer()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def engine(llama_server):
    url, proc = llama_server
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = RemoteBackend(url, MODEL, max_model_len=2048)  # llama.cpp does not say its n_ctx
    if proc.poll() is not None:  # e.g. a build for CPU features the machine does not enable
        pytest.fail(f"llama_cpp.server crashed (exit {proc.returncode}); rebuild it with "
                    f"CMAKE_ARGS='-DGGML_NATIVE=OFF': {proc.stderr.read()[-1000:]}")
    assert any("leading BOS" in str(w.message) for w in caught)
    yield engine
    engine.close()


def chat(tokenizer, question: str) -> list[int]:
    return tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                          add_generation_prompt=True))


def test_the_server_is_recognised(engine):
    protocol = engine.protocol
    assert (protocol.name, protocol.dialect, protocol.text_prompts) == ("openai", "echo", True)
    assert protocol.requires_bos == engine.tokenizer.bos_token_id == 1 and protocol.shift == 0
    assert engine.alignment == "aligned after a leading BOS only"


def test_step_scores_agree_with_the_embedded_engine(engine, smollm2_llm):
    tokenizer = engine.tokenizer
    cases = []
    for i, question in enumerate(["What is 7 times 6?", "Name three prime numbers.", "Why is the sky blue?"]):
        prompt = chat(tokenizer, question)
        for seed in (i, i + 10):
            step = smollm2_llm.generate(prompt, SamplingParams(temperature=0.8, max_tokens=20, seed=seed))[0].token_ids
            if tokenizer.encode(tokenizer.decode(prompt + step, skip_special_tokens=False)) == prompt + step:
                cases.append((prompt, step))
    assert len(cases) >= 4
    worst_token = worst_step = 0.0
    shifted = []
    for prompt, step in cases:
        seq = engine.add_sequence(prompt)
        remote = engine.score(seq, step, keep=False).token_logprobs
        engine.free(seq)
        local = smollm2_llm.score(prompt, step).token_logprobs
        worst_token = max(worst_token, max(abs(a - b) for a, b in zip(remote, local)))
        worst_step = max(worst_step, abs(statistics.mean(remote) - statistics.mean(local)))
        shifted += [abs(a - b) for a, b in zip(remote[1:], local[:-1])]
    print(f"\nllama.cpp vs embedded over {len(cases)} steps: worst token |d| {worst_token:.3f}, "
          f"worst step mean-NLL |d| {worst_step:.3f}, shifted-by-one median |d| {statistics.median(shifted):.2f}")
    assert worst_token <= TOKEN_TOL and worst_step <= STEP_TOL
    assert statistics.median(shifted) > 1.0  # the tolerance tells an aligned server from a misaligned one


def test_generated_steps_end_at_the_stop_token(engine, smollm2_llm):
    tokenizer = engine.tokenizer
    prompt = chat(tokenizer, "Write two short sentences about cats.")
    params = SamplingParams(temperature=0.0, max_tokens=48, stop=["\n\n"], include_stop_str_in_output=True)
    engine.add_request(prompt, params)
    outputs = []
    while engine.has_unfinished():
        outputs.extend(engine.step())
    (out,) = outputs
    # the text follows plain generation: special tokens (an EOS the server stopped at) are skipped
    assert tokenizer.decode(out.token_ids, skip_special_tokens=True) == out.text
    if out.finish_reason == "stop" and out.outputs[0].stop_reason == "\n\n":
        assert "\n\n" in out.text and "\n\n" not in tokenizer.decode(out.token_ids[:-1])
    local = smollm2_llm.generate(prompt, params)[0]
    assert out.token_ids[:4] == local.token_ids[:4]  # greedy: the same first tokens despite llama.cpp's numerics


def test_an_eos_the_server_does_not_return_gets_its_log_prob(engine, smollm2_llm):
    """llama.cpp stops at an EOS without naming it: the EOS joins the step with its log-prob (self
    mode scores a step from its generation log-probs), as the embedded engine gives it."""
    tokenizer = engine.tokenizer
    prompt = chat(tokenizer, "Say hello.")
    params = SamplingParams(temperature=0.0, max_tokens=64, logprobs=True)
    engine.add_request(prompt, params)
    outputs = []
    while engine.has_unfinished():
        outputs.extend(engine.step())
    (out,) = outputs
    ids, logprobs = out.token_ids, out.outputs[0].logprobs
    assert out.finish_reason == "stop" and ids[-1] in engine.eos_token_ids, "the step must end at an EOS"
    assert len(logprobs) == len(ids)
    (local,) = smollm2_llm.score(prompt + ids[:-1], ids[-1:]).token_logprobs
    assert logprobs[-1] == pytest.approx(local, abs=TOKEN_TOL)


def test_a_history_the_server_tokenizes_differently_is_scored_by_text_span(engine, smollm2_llm):
    """The server computes on its own tokenization of the text; its log-probs come back onto ours
    by text span: one of our tokens spelling two of its tokens gets their sum, two of ours spelling
    one of its get half each, and a differently tokenized history does not move the step's values."""
    tokenizer = engine.tokenizer
    nl, nn = tokenizer.encode("\n"), tokenizer.encode("\n\n")
    sure = chat(tokenizer, "Hi") + tokenizer.encode("Sure.")
    hello = tokenizer.encode("Hello")

    def embedded(ids: list[int], start: int) -> list[float]:
        """The embedded engine's log-probs of ids[start:] on the tokens the server computes."""
        assert tokenizer.encode(tokenizer.decode(ids, skip_special_tokens=False)) == ids
        return smollm2_llm.score(ids[:start], ids[start:]).token_logprobs

    def remote(history: list[int], step: list[int]) -> list[float]:
        seq = engine.add_sequence(history)
        values = engine.score(seq, step, keep=False).token_logprobs
        engine.free(seq)
        assert len(values) == len(step)
        return values

    # "\n\n" as one token where the server reads "\n" "\n": the two log-probs summed
    split = sure + nl + nl + hello
    local = embedded(split, len(sure))
    assert remote(sure, nn + hello) == pytest.approx([local[0] + local[1], local[2]], abs=TOKEN_TOL)
    # " " "Hello" where the server reads " Hello": half of its log-prob each
    merged = sure + tokenizer.encode(" Hello")
    (whole,) = embedded(merged, len(sure))
    assert remote(sure, tokenizer.encode(" ") + hello) == pytest.approx([whole / 2, whole / 2], abs=TOKEN_TOL)
    # a history written "\n\n" that the server reads as "\n" "\n" leaves the step's values as they are
    local = embedded(split, len(split) - 1)
    assert remote(sure + nn, hello) == pytest.approx(local, abs=TOKEN_TOL)


def test_a_server_with_a_smaller_context_is_named_in_the_error(smollm2_llm):
    """llama-cpp-python started with --n_ctx below what a1 assumes answers a generation that reaches
    its context with HTTP 500 "could not broadcast input array from shape (49152,) into shape
    (0,)": the error says the request ran past the server's context, with both sizes and the fix."""
    server = LlamaServer(n_ctx=64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            engine = RemoteBackend(server.url, MODEL, max_model_len=2048, check_alignment=False)
        prompt = chat(engine.tokenizer, "Write a long story about a cat.")
        engine.add_request(prompt, SamplingParams(temperature=0.0, max_tokens=200, ignore_eos=True))
        with pytest.raises(RemoteRequestError) as info:
            while engine.has_unfinished():
                engine.step()
        engine.close()
    finally:
        server.stop()
    message = str(info.value.failed_requests[0][3])
    assert "could not broadcast input array" in message and "ran past the server's context" in message
    assert f"{len(prompt)} tokens of history and up to 200 more" in message and "max_model_len 2048" in message
    assert "--n_ctx" in message


def run_policy(llm, questions: list[str], seed: int = 5):
    return generate(questions, target=llm, calibration=fixed_calibrator(1.1, 4.0), temperature=0.8, seed=seed, chat=True,
                    num_samples=2, max_tokens=48, step_tokens=12, max_turns=5, alpha=0.3, alpha_resample=0.6,
                    max_resamples=1, progress=False)


@pytest.mark.parametrize("mode", ["self", "pair"])
def test_the_policy_runs_against_llama_cpp(request, llama_server, mode):
    """The embedded engine's policy checks hold against llama.cpp's server, in self mode (scores
    from the generation's log-probs) and as a pair of two servers (the target scores the draft's
    steps through echoed prompt log-probs)."""
    draft_url = request.getfixturevalue("llama_draft_server") if mode == "pair" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the leading-BOS note of the start-up probe
        llm = RemoteLLM(llama_server[0], draft_url, tokenizer=MODEL, max_model_len=2048)
    with llm:
        assert llm.self_mode == (mode == "self")
        # one question for the pair: its target re-reads whole histories (no prefix cache across samples)
        questions = ["What is 7 times 6?", "Tom has 3 apples and buys 5 more. How many apples does he have?"]
        results = run_policy(llm, questions[:1] if mode == "pair" else questions)
        metrics = llm.get_metrics()
    for result in results:
        check_result(llm, result, "async", 0.3, 0.6)
    decisions = {step.decision for result in results for sample in result.samples for step in sample.steps}
    assert {"accept", "takeover"} <= decisions, decisions
    assert metrics["failures"] == 0 and metrics["generations"] > 0
    assert (metrics["scores"] > 0) == (mode == "pair")


def test_a_killed_server_fails_its_samples_and_a_rerun_finishes_them(smollm2_llm, tmp_path):
    """`a1 eval --target-url` on llama.cpp: the server killed after the first recorded sample stops
    the run naming the samples that failed; rerun with the same --out against the restarted server,
    it runs only those and records every sample exactly once."""
    data = tmp_path / "q.jsonl"
    questions = ["What is 7 times 6?", "What is 15 + 27?", "What is 9 minus 4?"]
    data.write_text("".join(json.dumps({"id": f"q{i}", "problem": q, "answer": "1"}) + "\n"
                            for i, q in enumerate(questions)))
    out = tmp_path / "run"
    server = LlamaServer()
    argv = [sys.executable, "-m", "a1.cli", "eval", "--target-url", server.url, "--tokenizer", MODEL,
            "--data", str(data), "--samples", "3", "--max-tokens", "64", "--step-tokens", "16", "--turns", "4",
            "--out", str(out), "--no-progress"]
    try:
        first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        records = out / "samples.jsonl"
        deadline = time.monotonic() + 300
        while not (records.exists() and records.read_text().count("\n") >= 1):
            assert first.poll() is None, f"a1 eval ended before the kill: {first.communicate()}"
            assert time.monotonic() < deadline, "no sample recorded within 300 s"
            time.sleep(0.2)
        server.kill()
        stdout, stderr = first.communicate(timeout=300)
        assert first.returncode == 1, (stdout, stderr)
        assert "sample" in stderr and "rerun" in stderr, stderr
        recorded = records.read_text().count("\n")
        assert 1 <= recorded < 9
        server.stop()
        server = LlamaServer(port=server.port)  # the same URL: the run's settings name it
        second = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr
        assert f"{recorded} samples recorded" in second.stdout
    finally:
        server.stop()
    done = [json.loads(line) for line in records.read_text().splitlines()]
    assert sorted((r["question_id"], r["sample_index"]) for r in done) == \
        [(f"q{i}", k) for i in range(3) for k in range(3)]
