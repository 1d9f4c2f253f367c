"""A row a kernel refuses fails only its own request: the others in the same step complete with
exactly what they would have produced alone (sampling, scoring and speculative verification), and
parameters are checked in the kernels' float32 at submission."""
import pytest

from a1 import LLM
from a1.engine import EngineConfig, LLMEngine, RequestFailed, RequestOutput, SamplingParams
from a1.engine.sampling_rows import each_alone_on_failure
from a1_ext import ops
from fake_lm import Loaded, TinyLM

VICTIM = SamplingParams(temperature=0.9, top_p=0.9, max_tokens=8, seed=11, ignore_eos=True, logprobs=True)


def engine_for(model, tokenizer) -> LLMEngine:
    return LLMEngine(model, tokenizer, EngineConfig(num_blocks=64, block_size=4, max_num_batched_tokens=64))


def banned_everything(vocab: int) -> SamplingParams:
    """Parameters whose first row has no token left (every id a stop id before min_tokens): the
    sampling kernel refuses that row. Refused at submission, so they are set after it."""
    params = SamplingParams(max_tokens=4, min_tokens=2, seed=3)
    params.banned_after_submission = list(range(vocab))
    return params


def run(engine: LLMEngine, requests: list[tuple[list[int], SamplingParams]]) -> list[RequestOutput]:
    ids = [engine.add_request(prompt, params) for prompt, params in requests]  # one batch: submitted together
    for _, params in requests:
        if hasattr(params, "banned_after_submission"):
            params.stop_token_ids = params.banned_after_submission
    outs = {}
    while engine.has_unfinished():
        outs.update({o.request_id: o for o in engine.step()})
    return [outs[i] for i in ids]


def inf_temperature() -> SamplingParams:
    params = SamplingParams(max_tokens=4, seed=5)
    params.temperature = float("inf")  # past validation: what a kernel still refuses
    return params


def zero_top_p() -> SamplingParams:
    params = SamplingParams(max_tokens=4, seed=5)
    params.top_p = 0.0
    return params


@pytest.mark.parametrize("attacker", ["banned_everything", "inf_temperature", "zero_top_p"])
def test_a_row_the_sampler_refuses_fails_alone(tiny_model, tokenizer, attacker):
    bad = banned_everything(tiny_model.config.vocab_size) if attacker == "banned_everything" else globals()[attacker]()
    alone = run(engine_for(tiny_model, tokenizer), [([3, 4, 5], VICTIM)])[0]
    engine = engine_for(tiny_model, tokenizer)
    victim, failed, victim2 = run(engine, [([3, 4, 5], VICTIM), ([6, 7], bad), ([3, 4, 5], VICTIM)])
    assert failed.error is not None and failed.finish_reason == "error"
    for out in (victim, victim2):
        assert out.error is None and out.token_ids == alone.token_ids  # log-probs: batch-shaped rounding only
        assert out.logprobs == pytest.approx(alone.logprobs, abs=1e-5)
    assert not engine.seqs and engine.block_manager.num_used_blocks == 0
    # the engine goes on serving
    assert run(engine, [([3, 4, 5], VICTIM)])[0].token_ids == alone.token_ids


def test_llm_generate_names_the_attacker_and_returns_the_victim(tiny_model, tokenizer):
    llm = LLM(Loaded(tiny_model, tokenizer, tiny_model.config), block_size=4, kv_cache_gb=0.001)
    alone = llm.generate([[3, 4, 5]], VICTIM)[0]
    with pytest.raises(RequestFailed, match=r"prompts \[1\]") as info:
        llm.generate([[3, 4, 5], [6, 7]], [VICTIM, inf_temperature()])
    assert info.value.outputs[0].token_ids == alone.token_ids and info.value.outputs[1].failed


def test_no_token_left_before_min_tokens_is_refused_at_submission(tiny_model, tokenizer):
    engine = engine_for(tiny_model, tokenizer)
    vocab = tiny_model.config.vocab_size
    every_id = SamplingParams(max_tokens=4, min_tokens=1, stop_token_ids=list(range(vocab)))
    with pytest.raises(ValueError, match=f"cover all {vocab} tokens"):
        engine.add_request([3, 4], every_id)
    all_but_eos = [t for t in range(vocab) if t not in engine.eos_token_ids]  # EOS is masked too
    with pytest.raises(ValueError, match="min_tokens=1"):
        engine.add_request([3, 4], SamplingParams(max_tokens=4, min_tokens=1, stop_token_ids=all_but_eos))
    out = run(engine, [([3, 4], SamplingParams(max_tokens=4, min_tokens=1, stop_token_ids=all_but_eos,
                                                 ignore_eos=True, temperature=0))])[0]
    assert out.error is None and out.token_ids[0] in engine.eos_token_ids  # only EOS left: allowed, sampled
    assert not engine.seqs


def test_float32_bounds_are_checked_at_submission(tiny_model, tokenizer):
    for kwargs in (dict(temperature=1e39), dict(temperature=10**400), dict(top_p=1e-50), dict(top_p=1e-46)):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            SamplingParams(**kwargs)
    assert SamplingParams(temperature=3e38, top_p=1.5e-45).top_p == 1.5e-45  # representable: accepted
    llm = LLM(Loaded(tiny_model, tokenizer, tiny_model.config), block_size=4, kv_cache_gb=0.001)
    for temperature in (1e39, 1e-50, 1e-40):
        with pytest.raises(ValueError, match="temperature"):
            llm.score([3, 4], [5, 6], temperature=temperature)
    assert not llm.engine.seqs


def test_a_score_the_op_refuses_fails_alone(tiny_model, tokenizer, monkeypatch):
    """Three sequences scored in one call of linear_step_score; the op refuses batches holding a
    poisoned target (standing in for a row a kernel refuses): that sequence alone fails, the others
    get the log-probs they get alone."""
    engine = engine_for(tiny_model, tokenizer)
    steps = [[5, 6, 7], [8, 9, 40], [10, 11]]
    alone = []
    for step in steps:
        seq = engine.add_sequence([1, 2, 3])
        alone.append(engine.score(seq, step, keep=False))
        engine.free(seq)
    real = ops.linear_step_score

    def refusing(hidden, lm_head, token_ids, *args):
        if 40 in token_ids.tolist():
            raise RuntimeError("token_ids[2] refused")
        return real(hidden, lm_head, token_ids, *args)

    monkeypatch.setattr(ops, "linear_step_score", refusing)
    seqs = [engine.add_sequence([1, 2, 3]) for _ in steps]
    for seq, step in zip(seqs, steps):
        engine.submit_score(seq, step, keep=False)
    results = {}
    while engine.has_unfinished():
        results.update({r.seq_id: r for r in engine.step()})
    assert "refused" in str(results[seqs[1]].error) and not engine.is_live(seqs[1])
    for i in (0, 2):
        assert results[seqs[i]].error is None
        assert results[seqs[i]].token_logprobs == pytest.approx(alone[i].token_logprobs, abs=1e-6)


def test_a_speculative_request_that_fails_ends_alone(tiny_model, tokenizer):
    target = Loaded(tiny_model, tokenizer, tiny_model.config)
    draft_model = TinyLM(seed=1)
    draft = Loaded(draft_model, tokenizer, draft_model.config)
    llm = LLM(target, draft=draft, num_speculative_tokens=3, block_size=4, kv_cache_gb=0.002)
    alone = llm.generate([[3, 4, 5]], VICTIM)[0]
    with pytest.raises(RequestFailed, match=r"prompts \[1\]") as info:
        llm.generate([[3, 4, 5], [6, 7], [3, 4, 5]], [VICTIM, zero_top_p(), VICTIM])
    outs = info.value.outputs
    assert outs[1].finish_reason == "error" and outs[1].error is not None
    for out in (outs[0], outs[2]):
        assert out.token_ids == alone.token_ids and out.logprobs == pytest.approx(alone.logprobs, abs=1e-5)
    for engine in llm.pair.engines:
        assert not engine.seqs and engine.block_manager.num_used_blocks == 0


def test_each_alone_on_failure_keeps_order_and_errors_in_place():
    def run_items(items):
        if 2 in items:
            raise ValueError("two")
        return [i * 10 for i in items]

    assert each_alone_on_failure(run_items, [0, 1, 3]) == [0, 10, 30]
    got = each_alone_on_failure(run_items, [0, 2, 3])
    assert got[0] == 0 and got[2] == 30 and isinstance(got[1], ValueError)
