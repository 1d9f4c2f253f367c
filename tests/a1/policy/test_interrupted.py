"""Any exit from a1_ext.generate (an exception from on_sample / on_step, Ctrl-C, a failed request)
leaves the LLM as it was: no live sequence, the blocks it held before, and the next call runs and
draws what it would have drawn on a fresh engine. Plus the argument checks that run before any
sample starts."""
from __future__ import annotations

import pytest

import a1_ext
from policy_checks import check_result

PROMPTS = ["What is 2+3?", "Name a prime."]
BUDGET = dict(num_samples=3, max_tokens=40, step_tokens=6, max_turns=8, alpha=0.2, progress=False, chat=True)


class Stop(Exception):
    pass


def state(llm) -> tuple:
    return llm.pair.num_used_blocks(), sum(len(e.seqs) for e in llm.pair.engines)


def raise_on_call(n: int, exc: BaseException):
    calls = []

    def callback(*args) -> None:
        calls.append(args)
        if len(calls) == n:
            raise exc

    return callback


@pytest.mark.parametrize("where", ["on_sample", "on_step"])
@pytest.mark.parametrize("exc", [Stop("callback failed"), KeyboardInterrupt()])
def test_an_interrupted_generate_leaves_the_llm_usable(llm, where, exc):
    before = state(llm)
    for _ in range(2):  # twice: nothing accumulates (the issue saw 18 -> 22 -> 31 blocks)
        with pytest.raises(type(exc)):
            a1_ext.generate(PROMPTS, target=llm, **BUDGET, **{where: raise_on_call(2, exc)})
        assert state(llm) == before
    for result in a1_ext.generate(PROMPTS, target=llm, **BUDGET):  # the next call runs whole
        check_result(llm, result, "async")
    assert state(llm) == before


def test_a_failed_request_leaves_no_sequence_of_the_run(llm, monkeypatch):
    """A forward that raises fails its step's requests; the run stops naming a sample, and the
    other samples' sequences (mid-task, or idle waiting for their turn) are dropped with it."""
    from a1.engine.model_runner import ModelRunner

    real, calls = ModelRunner.run, []

    def run_failing_once(self, batch):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("the forward failed")
        return real(self, batch)

    before = state(llm)
    monkeypatch.setattr(ModelRunner, "run", run_failing_once)
    with pytest.raises(RuntimeError, match=r"question \d+ sample \d+: its \w+ request failed"):
        a1_ext.generate(PROMPTS, target=llm, **BUDGET)
    assert state(llm) == before
    for result in a1_ext.generate(PROMPTS, target=llm, **BUDGET):
        check_result(llm, result, "async")


def test_tiny_alpha_starts_at_once(llm):
    """alpha = 1e-30 needs ~1e30 scores before anything can be rejected: every test is in warm-up,
    every step accepted (the warm-up count is closed form: the run used to hang computing it)."""
    results = a1_ext.generate(PROMPTS, target=llm, **(BUDGET | dict(alpha=1e-30)))
    steps = [s for r in results for sample in r.samples for s in sample.steps if s.p_value is not None]
    assert steps and all(s.decision == "accept" for s in steps)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(temperature=1e39), ValueError, "temperature"),
    (dict(top_p=1e-50), ValueError, "top_p"),
    (dict(sample_indices=[[0, 0], [1]]), ValueError, r"sample_indices\[0\] repeats sample\(s\) \[0\]"),
    (dict(sample_indices=[[0], [3]]), ValueError, r"sample_indices\[1\] must hold ints in \[0, 3\)"),
    (dict(sample_indices=[[0]]), ValueError, "sample_indices has 1 entries for 2 prompts"),
])
def test_bad_arguments_are_refused_before_anything_runs(llm, kwargs, error, match):
    before = state(llm)
    with pytest.raises(error, match=match):
        a1_ext.generate(PROMPTS, target=llm, **(BUDGET | kwargs))
    assert state(llm) == before


@pytest.mark.parametrize("prompts, match", [
    ([123], r"prompts\[0\] must be a non-empty string or list of token ids, got 123 \(one prompt of token ids"),
    (["ok", ""], r"prompts\[1\]"),
    (["ok", None], r"prompts\[1\]"),
    (42, "prompts must be a string or a list of prompts"),
])
def test_prompts_that_are_not_prompts_are_named(llm, prompts, match):
    with pytest.raises(TypeError, match=match):
        a1_ext.generate(prompts, target=llm, **BUDGET)
