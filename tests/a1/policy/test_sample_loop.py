"""The step loop's two structural promises: a rejected step leaves both caches exactly as they
were (tokens and KV blocks), and in async mode no sample ever waits for another."""
from __future__ import annotations

import pytest

import a1
from a1.calibration import Calibrator
from a1.engine.block_manager import cdiv
from a1.policy.config import PolicyConfig
from a1.policy.context import RunContext
from a1.policy.driver import Driver
from a1.policy.sample_loop import SampleRun


def pool_blocks(sample: SampleRun) -> int:
    engines = {id(sample.ctx.engine(role)): sample.ctx.engine(role) for role in sample.seqs}
    return sum(engine.block_manager.num_used_blocks for engine in engines.values())


def expected_blocks(sample: SampleRun) -> int:
    """A history of L tokens, all computed but the pending last one, holds cdiv(L - 1, block) blocks
    per model."""
    per_model = cdiv(sample.history_len() - 1, sample.ctx.pair.target.config.block_size)
    return per_model * len(sample.seqs)


@pytest.mark.parametrize("on_reject", ["rewrite", "append"])
def test_rejected_steps_restore_both_caches_exactly(llm, monkeypatch, on_reject):
    rollbacks = []
    roll_back = SampleRun.roll_back

    def checked_roll_back(self, step, by="draft"):
        roll_back(self, step, by)
        history = self.ctx.engine("target").token_ids(self.seqs[next(iter(self.seqs))])[: self.prompt_len]
        history += self.result.token_ids
        for role, seq_id in self.seqs.items():
            assert self.ctx.engine(role).token_ids(seq_id) == history, f"{role}'s history after a rollback"
        rollbacks.append((pool_blocks(self), expected_blocks(self)))

    monkeypatch.setattr(SampleRun, "roll_back", checked_roll_back)
    results = a1.policy.generate(
        ["Roll it back."], target=llm, num_samples=1, alpha=0.5, alpha_resample=0.8, max_resamples=2,
        step_tokens=5, max_tokens=60, max_turns=10, on_reject=on_reject, progress=False,
    )
    assert rollbacks, "with these levels some steps must be rejected"
    assert all(held == expected for held, expected in rollbacks)
    decisions = {s.decision for s in results[0].samples[0].steps}
    assert "resample" in decisions and "takeover" in decisions


def run_one_slow_sample(llm, monkeypatch, mode: str) -> dict[tuple[int, int], int]:
    """Two samples of one question; sample 0 writes 12-token steps, sample 1 2-token steps.
    Returns (sample, turn) -> the engine step count when that turn's step joined the sample."""
    monkeypatch.setattr(SampleRun, "step_limit", lambda self, wanted: 12 if self.index == 0 else 2)
    cfg = PolicyConfig(num_samples=2, mode=mode, max_turns=6, max_tokens=200, temperature=0.0, step_stop=(), alpha=0.2)
    done: dict[tuple[int, int], int] = {}

    def on_step(sample, step):
        done.setdefault((sample.index, step.turn), sum(e.metrics.num_steps for e in llm.pair.engines))

    ctx = RunContext(llm.pair, cfg, Calibrator(cfg.turn_edges, smoothed=True), True, [0], on_step)
    prompt = llm.encode(["Slow and fast"], chat=False)[0][1]
    Driver(ctx).run([prompt], [[0, 1]])
    return done


@pytest.mark.parametrize("llm", ["self"], indirect=True)
def test_async_never_waits_for_a_slow_sample_and_sync_does(llm, monkeypatch):
    fast_async = run_one_slow_sample(llm, monkeypatch, "async")
    turns = [t for (i, t) in fast_async if i == 1]
    assert len(turns) >= 5
    # async: the fast sample's k-th 2-token step is done after about 2(k+1) engine steps, whatever
    # the slow sample does (a takeover's rewrite costs it another 2)
    assert fast_async[(1, 4)] <= 2 * 5 + 2 * 5
    # sync (the broken variant for this property): every turn waits for the 12-token steps
    fast_sync = run_one_slow_sample(llm, monkeypatch, "sync")
    assert fast_sync[(1, 4)] >= 12 * 5


@pytest.mark.parametrize("llm", ["pair"], indirect=True)
def test_a_request_the_engine_fails_fails_the_call_naming_the_sample(llm, monkeypatch):
    """The engine isolates a failing request (it comes back with .error); the policy does not
    swallow it: the call raises naming the question and sample, and the engine keeps serving."""
    target = llm.pair.target
    run = target.runner.run
    calls = {"n": 0}

    def failing_run(batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected failure")
        return run(batch)

    monkeypatch.setattr(target.runner, "run", failing_run)
    with pytest.raises(RuntimeError, match=r"question 0 sample \d+: its \w+ request failed in the engine"):
        a1.policy.generate(["Fail me."], target=llm, num_samples=2, max_tokens=40, step_tokens=6, progress=False)
    monkeypatch.setattr(target.runner, "run", run)
    out = a1.policy.generate(["Then serve me."], target=llm, num_samples=2, max_tokens=24, step_tokens=6,
                             progress=False)
    assert len(out[0].samples) == 2


def test_identical_redrafts_are_one_step_whatever_their_float_noise():
    """keep_best on attempts whose tokens repeat (greedy redrafts): the first of the identical ones
    stands for all, so two scorings of the same tokens that differ in the last bits (another batch
    layout) never decide which is kept; a distinct, better attempt still wins."""
    from a1.policy.context import Step
    from a1.policy.sample_state import SampleState

    def kept(attempts):
        state = SampleState.__new__(SampleState)  # keep_best only calls roll_back and keep
        calls = []
        state.roll_back = lambda step, by="draft": calls.append(("back", step.attempt))
        state.keep = lambda step: calls.append(("keep", step.attempt))
        state.keep_best(attempts)
        return calls

    same = [Step(0, i, [5, 6, 7], None, None, score=s) for i, s in enumerate((2.0, 2.0 - 1e-12, 2.0 - 2e-12))]
    assert kept(same) == [("back", 2), ("keep", 0)]
    better = same[:2] + [Step(0, 2, [5, 6, 8], None, None, score=1.5)]
    assert kept(better) == [("keep", 2)]
