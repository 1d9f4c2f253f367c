"""The A1 policy end to end through RemoteLLM against `a1 serve` subprocesses on 127.0.0.1: the
same decisions, tokens and scores as the embedded engine under the same seeds (an offline
calibrator of fixed scores makes p-values independent of the order steps arrive in; sampling is
seeded per request), over both protocols, for a draft/target pair and in self mode; every KV block
is free afterwards; and a server killed mid-run stops the run with an error naming the samples."""
from __future__ import annotations

import time

import pytest

import a1
from a1.policy import generate
from a1.remote import RemoteConfig, RemoteLLM, RemoteSamplesFailed
from remote_helpers import fixed_calibrator
from serve_helpers import ServerProcess, get, write_tiny_checkpoint

PROMPTS = ["What is 2+3?", "Name a prime."]
BUDGET = dict(num_samples=3, max_tokens=64, step_tokens=8, max_turns=8, alpha=0.3, alpha_resample=0.6,
              max_resamples=1, progress=False)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("tiny")
    target = write_tiny_checkpoint(root / "target", seed=0)
    draft = write_tiny_checkpoint(root / "draft", seed=1, hidden_size=32, intermediate_size=64, head_dim=8)
    return str(target), str(draft)


@pytest.fixture(scope="module")
def served(checkpoints):
    with ServerProcess("--model", checkpoints[0], "--draft", checkpoints[1], "--kv-cache-gb", "0.05") as server:
        yield server


@pytest.fixture(scope="module")
def embedded(checkpoints):
    return {"pair": a1.LLM(checkpoints[0], draft=checkpoints[1], kv_cache_gb=0.05),
            "self": a1.LLM(checkpoints[0], kv_cache_gb=0.05)}


def run_policy(llm, temperature: float, seed: int):
    # steps of the random pair score perplexities of 1e3..1e6, self mode's (the writer's own
    # log-probs) 2..10: the fixed calibration set spans them
    calibration = fixed_calibrator(2.0, 10.0) if llm.self_mode else fixed_calibrator(1e3, 1e6)
    return generate(PROMPTS, target=llm, calibration=calibration, temperature=temperature, seed=seed, **BUDGET)


def signature(results) -> list:
    return [[(s.token_ids, s.finish_reason, [(r.turn, r.attempt, r.decision, r.by, r.num_tokens, r.kept)
                                             for r in s.steps]) for s in result.samples] for result in results]


def scores(results) -> list[float]:
    return [r.score for result in results for s in result.samples for r in s.steps if r.score is not None]


@pytest.mark.parametrize("protocol", ["sglang", "openai"])
@pytest.mark.parametrize("mode, temperature", [("pair", 0.0), ("pair", 0.7), ("self", 0.7)])
def test_policy_decisions_and_tokens_match_the_embedded_engine(served, checkpoints, embedded, protocol, mode,
                                                               temperature):
    target, draft = checkpoints
    draft_model = draft if mode == "pair" else None
    with RemoteLLM(served.url, served.url, tokenizer=target, protocol=protocol, target_model=target,
                   draft_model=draft_model) as llm:
        assert llm.self_mode == (mode == "self")
        assert (llm.pair.target_name, llm.pair.draft_name) == (target, draft_model or target)  # as a1.LLM names them
        remote = run_policy(llm, temperature, seed=11)
        metrics = llm.get_metrics()
    local = run_policy(embedded[mode], temperature, seed=11)
    assert signature(remote) == signature(local)
    assert scores(remote) == pytest.approx(scores(local), rel=1e-4)
    decisions = {r.decision for result in local for s in result.samples for r in s.steps}
    assert {"accept", "takeover"} <= decisions  # the fixed calibration splits the steps
    assert metrics["generations"] > 0 and metrics["failures"] == 0
    assert (metrics["scores"] > 0) == (mode == "pair")  # self mode scores from the generation's log-probs
    status, health = get(served.url + "/health")
    assert status == 200 and health["used_blocks"] == {"target": 0, "draft": 0}
    assert health["live_sequences"] == {"target": 0, "draft": 0}


def test_a_server_killed_mid_run_names_the_failed_samples(checkpoints):
    target, draft = checkpoints
    server = ServerProcess("--model", target, "--draft", draft, "--kv-cache-gb", "0.05")
    config = RemoteConfig(generate_timeout=5, score_timeout=5, connect_timeout=1, max_retries=2, backoff=0.1)
    steps = []

    def kill_after_a_few_steps(sample, step):
        steps.append(step)
        if len(steps) == 4:
            server.kill()

    try:
        with RemoteLLM(server.url, server.url, tokenizer=target, target_model=target, draft_model=draft,
                       config=config) as llm:
            start = time.monotonic()
            with pytest.raises(RemoteSamplesFailed) as info:
                generate(PROMPTS, target=llm, calibration=fixed_calibrator(1e3, 1e6), temperature=0.7,
                         on_step=kill_after_a_few_steps, **BUDGET)
            elapsed = time.monotonic() - start
            assert not llm.pair.target.has_unfinished() and not llm.pair.draft.has_unfinished()
    finally:
        server.stop()
    error = info.value
    assert error.samples and all(q in (0, 1) and 0 <= s < 3 for q, s in error.samples)
    assert "question" in str(error) and "sample" in str(error) and "cannot" not in str(error).split("\n")[0]
    assert elapsed < 20  # connection refused, 3 attempts with short backoffs: no hang
    print(f"\nthe run stopped after {elapsed:.2f} s: {error}")


def test_a_replica_killed_mid_run_leaves_the_run_whole(checkpoints, embedded):
    """Two replicas of the pair; one is killed after a few steps: its samples continue on the other
    (histories are client-side, requests seeded), so the run completes with every sample once and
    the same decisions and tokens as the embedded engine."""
    target, draft = checkpoints
    args = ("--model", target, "--draft", draft, "--kv-cache-gb", "0.05")
    doomed, survivor = ServerProcess(*args), ServerProcess(*args)
    config = RemoteConfig(generate_timeout=10, score_timeout=10, connect_timeout=1, max_retries=1, backoff=0.1)
    steps = []

    def kill_after_a_few_steps(sample, step):
        steps.append(step)
        if len(steps) == 4:
            doomed.kill()

    try:
        with RemoteLLM([doomed.url, survivor.url], [doomed.url, survivor.url], tokenizer=target,
                       target_model=target, draft_model=draft, config=config) as llm:
            with pytest.warns(UserWarning, match="is taken out of the run"):
                remote = generate(PROMPTS, target=llm, calibration=fixed_calibrator(1e3, 1e6), temperature=0.7,
                                  seed=11, on_step=kill_after_a_few_steps, **BUDGET)
            metrics = llm.get_metrics()
    finally:
        doomed.stop()
        survivor.stop()
    local = run_policy(embedded["pair"], 0.7, seed=11)
    assert [[s.index for s in r.samples] for r in remote] == [[0, 1, 2], [0, 1, 2]]
    assert signature(remote) == signature(local)
    assert scores(remote) == pytest.approx(scores(local), rel=1e-4)
    assert metrics["failures"] == 0 and metrics["failovers"] + metrics["draft"]["failovers"] >= 1
    assert metrics["replicas"][doomed.url].startswith("down") and metrics["replicas"][survivor.url] == "up"
