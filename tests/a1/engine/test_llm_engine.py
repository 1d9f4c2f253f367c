"""LLMEngine + ModelRunner on the tiny fake model, checked against its dense (no-cache) forward."""
import math

import pytest

from a1.engine import EngineConfig, LLMEngine, RequestOutput, SamplingParams, ScoreResult
from fake_lm import FakeTokenizer

GREEDY = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)


def make_engine(model, tokenizer, **kw) -> LLMEngine:
    config = dict(num_blocks=64, block_size=4, max_num_batched_tokens=16)
    config.update(kw)
    return LLMEngine(model, tokenizer, EngineConfig(**config))


def run_all(engine: LLMEngine) -> dict[int, RequestOutput]:
    outputs = {}
    while engine.has_unfinished():
        for out in engine.step():
            outputs[out.request_id if isinstance(out, RequestOutput) else ("score", out.seq_id)] = out
    return outputs


def gen(engine: LLMEngine, *args, **kwargs) -> RequestOutput:
    """add_request(*args, **kwargs) and run until done; returns its output."""
    sid = engine.add_request(*args, **kwargs)
    return run_all(engine)[sid]


def prompt(n: int, offset: int = 0) -> list[int]:
    return [0] + [2 + (7 * i + offset) % 40 for i in range(n - 1)]


def dense_token_logprobs(model, history: list[int], tokens: list[int]) -> list[float]:
    lp = model.dense_logprobs(history + tokens)
    return [float(lp[len(history) - 1 + i, t]) for i, t in enumerate(tokens)]


def test_greedy_matches_reference_with_chunked_prefill(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer)
    prompts = [prompt(5), prompt(11, 3), prompt(23, 5)]  # 23 > 16: prefilled in two chunks
    ids = [engine.add_request(p, GREEDY) for p in prompts]
    outputs = run_all(engine)
    for sid, p in zip(ids, prompts):
        out = outputs[sid]
        assert out.token_ids == tiny_model.greedy_reference(p, 8)
        assert out.prompt_token_ids == p and out.finish_reason == "length"
        assert out.text == tokenizer.decode(out.token_ids, skip_special_tokens=True)
    assert engine.block_manager.num_used_blocks == 0 and not engine.seqs


def test_prefix_cache_hit_gives_same_output(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer)
    p = prompt(14)
    sid = engine.add_request(p, GREEDY)
    first = run_all(engine)[sid]
    sid = engine.add_request(p, GREEDY)
    second = run_all(engine)[sid]
    assert second.token_ids == first.token_ids
    assert first.metrics.num_cached_tokens == 0 and second.metrics.num_cached_tokens == 12
    assert engine.metrics.prefix_cache_hit_rate == pytest.approx(12 / 28)


def test_seeded_sampling_is_reproducible_in_any_batch(tiny_model, tokenizer):
    params = SamplingParams(temperature=1.0, top_k=20, top_p=0.9, max_tokens=12, seed=1234, ignore_eos=True)
    engine = make_engine(tiny_model, tokenizer)
    alone = gen(engine, prompt(7), params)
    other = [engine.add_request(prompt(9, i), SamplingParams(temperature=1.0, max_tokens=5)) for i in range(3)]
    sid = engine.add_request(prompt(7), params)
    together = run_all(engine)
    assert together[sid].token_ids == alone.token_ids
    assert all(o in together for o in other)
    reseeded = gen(engine, prompt(7), SamplingParams(**{**params.__dict__, "seed": 99}))
    assert reseeded.token_ids != alone.token_ids
    # requests without a seed draw theirs from the engine seed
    runs = []
    for _ in range(2):
        e = make_engine(tiny_model, tokenizer, seed=5)
        runs.append(gen(e, prompt(7), SamplingParams(max_tokens=12, ignore_eos=True)).token_ids)
    assert runs[0] == runs[1]


def test_logprobs_match_dense_forward(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer)
    p = prompt(9)
    out = gen(engine, p, SamplingParams(max_tokens=10, logprobs=True, seed=3, ignore_eos=True))
    assert out.logprobs == pytest.approx(dense_token_logprobs(tiny_model, p, out.token_ids), abs=1e-4)
    greedy = gen(engine, p, GREEDY)
    assert greedy.logprobs is None


def test_stop_string_across_tokens_and_min_tokens(tiny_model):
    p = prompt(6)
    ref = tiny_model.greedy_reference(p, 12)
    # two consecutive new tokens: "x\n" then "\ny" puts the step boundary across them
    j = next(j for j in range(1, 10) if ref[j] != ref[j + 1] and ref[j] not in ref[:j] and ref[j + 1] not in ref[: j + 1])
    a, b = ref[j], ref[j + 1]
    tok = FakeTokenizer(pieces={a: "x\n", b: "\ny"})
    engine = make_engine(tiny_model, tok)
    params = dict(temperature=0.0, max_tokens=12, ignore_eos=True)
    out = gen(engine, p, SamplingParams(stop="\n\n", **params))
    assert out.token_ids == ref[: j + 2] and out.finish_reason == "stop" and out.outputs[0].stop_reason == "\n\n"
    assert out.text == tok.decode(ref[:j]) + "x"
    out = gen(engine, p, SamplingParams(stop=["zzz", "\n\n"], include_stop_str_in_output=True, **params))
    assert out.text == tok.decode(ref[:j]) + "x\n\n"
    out = gen(engine, p, SamplingParams(stop="\n\n", min_tokens=j + 3, **params))
    assert out.token_ids == ref and out.finish_reason == "length"  # the boundary came too early


def test_stop_token_ids_and_eos(tiny_model, tokenizer):
    p = prompt(6)
    ref = tiny_model.greedy_reference(p, 12)
    stop_id = ref[4]
    first = ref.index(stop_id)
    engine = make_engine(tiny_model, tokenizer)
    out = gen(engine, p, SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[stop_id]))
    assert out.token_ids == ref[: first + 1] and out.finish_reason == "stop" and out.outputs[0].stop_reason == stop_id
    out = gen(engine, p, SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[stop_id], min_tokens=first + 2))
    assert stop_id not in out.token_ids[: first + 2] and len(out.token_ids) >= first + 2
    # the model's EOS (id 1) stops unless ignore_eos
    eos_engine = make_engine(tiny_model, tokenizer)
    eos_engine.eos_token_ids = [stop_id]
    eos_engine.runner.eos_token_ids = [stop_id]
    out = gen(eos_engine, p, SamplingParams(temperature=0, max_tokens=12))
    assert out.token_ids == ref[: first + 1] and out.finish_reason == "stop"
    out = gen(eos_engine, p, SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))
    assert out.token_ids == ref


@pytest.mark.parametrize("warm", [False, True])
def test_score_equals_dense_logprobs_and_rollback_restores(tiny_model, tokenizer, warm):
    engine = make_engine(tiny_model, tokenizer, max_num_batched_tokens=6)  # scoring spans chunks
    history, step = prompt(10), [5, 9, 13, 2, 7, 30, 31]
    sid = engine.add_sequence(history)
    if warm:  # the history's KV is computed already (all but its pending last token)
        out = gen(engine, params=GREEDY, seq_id=sid)
        engine.truncate(sid, len(history))
        assert out.token_ids
    result = engine.score(sid, step, keep=False)
    expected = dense_token_logprobs(tiny_model, history, step)
    assert result.token_logprobs == pytest.approx(expected, abs=1e-4)  # the first token is scored too
    assert result.step_nll == pytest.approx(-sum(expected) / len(expected), abs=1e-4)
    assert engine.token_ids(sid) == history
    again = engine.score(sid, step, keep=False)
    assert again.token_logprobs == pytest.approx(result.token_logprobs, abs=1e-5)
    empty = engine.score(sid, [], keep=False)
    assert empty.token_logprobs == [] and math.isnan(empty.step_nll)


def test_score_keep_then_generate_continues_from_the_step(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer)
    history, step = prompt(9), [4, 8, 15, 16, 23, 42]
    sid = engine.add_sequence(history)
    engine.score(sid, step, keep=True)
    assert engine.token_ids(sid) == history + step
    seq = engine.seqs[sid]
    assert seq.num_computed_tokens == len(history) + len(step) - 1 and seq.num_committed == len(seq)
    out = gen(engine, params=GREEDY, seq_id=sid)
    assert out.token_ids == tiny_model.greedy_reference(history + step, 8)
    assert out.prompt_token_ids is None and out.num_prompt_tokens == len(history + step)  # kept: no copy


def test_score_runs_in_the_same_step_as_decodes(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer)
    gen = engine.add_request(prompt(5), SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))
    engine.step()
    sid = engine.add_sequence(prompt(8, 1))
    engine.submit_score(sid, [3, 4, 5], keep=False)
    before, steps = len(engine.seqs[gen]), engine.metrics.num_steps
    outputs = engine.step()
    assert engine.metrics.num_steps == steps + 1 and len(engine.seqs[gen]) == before + 1
    assert [type(o) for o in outputs] == [ScoreResult]
    assert outputs[0].token_logprobs == pytest.approx(dense_token_logprobs(tiny_model, prompt(8, 1), [3, 4, 5]), abs=1e-4)


def test_fork_copy_on_write_keeps_every_branch_exact(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer)
    p = prompt(6)  # 6 tokens, blocks of 4: the tail block is partial and shared after fork
    parent = engine.add_sequence(p)
    gen(engine, params=SamplingParams(temperature=0, max_tokens=1), seq_id=parent)
    history = engine.token_ids(parent)
    children = [engine.fork(parent) for _ in range(3)]
    shared = engine.seqs[parent].block_table
    assert all(engine.seqs[c].block_table == shared for c in children)
    for i, c in enumerate(children):
        engine.add_request(params=SamplingParams(max_tokens=6, seed=i, logprobs=True, ignore_eos=True), seq_id=c)
    outs = run_all(engine)
    for c in children:
        tokens = outs[c].token_ids
        assert outs[c].logprobs == pytest.approx(dense_token_logprobs(tiny_model, history, tokens), abs=1e-4)
    assert len({tuple(outs[c].token_ids) for c in children}) > 1
    out = gen(engine, params=GREEDY, seq_id=parent)
    assert out.token_ids == tiny_model.greedy_reference(history, 8)
    for sid in [parent] + children:
        engine.free(sid)
    assert engine.block_manager.num_used_blocks == 0


def test_truncate_and_regenerate(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer)
    p = prompt(7)
    sid = engine.add_sequence(p)
    first = gen(engine, params=GREEDY, seq_id=sid)
    engine.truncate(sid, len(p) + 3)  # mid-output, mid-block
    again = gen(engine, params=GREEDY, seq_id=sid)
    assert first.token_ids[:3] + again.token_ids == (first.token_ids + tiny_model.greedy_reference(p + first.token_ids, 3))[:11]
    with pytest.raises(ValueError, match="num_tokens"):
        engine.truncate(sid, 10_000)


def test_preemption_then_completion_gives_identical_outputs(tiny_model, tokenizer):
    params = [SamplingParams(max_tokens=10, seed=i, ignore_eos=True) for i in range(6)]
    prompts = [prompt(6, i) for i in range(6)]
    roomy = make_engine(tiny_model, tokenizer)
    expected = run_all(roomy)
    ids = [roomy.add_request(p, sp) for p, sp in zip(prompts, params)]
    expected = run_all(roomy)
    tight = make_engine(tiny_model, tokenizer, num_blocks=10)  # 6 x 4 blocks wanted, 10 exist
    tight_ids = [tight.add_request(p, sp) for p, sp in zip(prompts, params)]
    got = run_all(tight)
    assert [got[i].token_ids for i in tight_ids] == [expected[i].token_ids for i in ids]
    assert tight.metrics.num_preemptions > 0 and tight.metrics.peak_blocks_used <= 10
    assert tight.block_manager.num_used_blocks == 0


def test_idle_sequence_evicted_then_scored_exactly(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer, num_blocks=8)
    kept = engine.add_sequence(prompt(12))
    gen(engine, params=SamplingParams(temperature=0, max_tokens=2), seq_id=kept)
    history = engine.token_ids(kept)
    gen(engine, prompt(20, 9), SamplingParams(max_tokens=8, ignore_eos=True))
    assert engine.metrics.num_idle_evictions >= 1 and engine.seqs[kept].block_table == []
    result = engine.score(kept, [6, 7, 8], keep=False)
    assert result.token_logprobs == pytest.approx(dense_token_logprobs(tiny_model, history, [6, 7, 8]), abs=1e-4)


def test_errors_name_the_argument(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer, max_model_len=32)
    with pytest.raises(ValueError, match="token_ids"):
        engine.add_request([0, 999], GREEDY)
    with pytest.raises(ValueError, match="token_ids must hold 1 to 31"):
        engine.add_request(list(range(2, 40)), GREEDY)
    sid = engine.add_request(prompt(4), GREEDY)
    with pytest.raises(RuntimeError, match="busy"):
        engine.fork(sid)
    with pytest.raises(KeyError, match="seq_id 12345"):
        engine.truncate(12345, 1)
    idle = engine.add_sequence(prompt(4))
    with pytest.raises(ValueError, match="max_model_len"):
        engine.submit_score(idle, [2] * 40)
    with pytest.raises(ValueError, match="temperature"):
        engine.submit_score(idle, [2], temperature=0.0)
    long = run_all(engine)
    assert long[sid].finish_reason == "length"
    out = gen(engine, prompt(28), SamplingParams(max_tokens=16, ignore_eos=True))
    assert out.finish_reason == "length" and len(out.token_ids) == 4  # capped by max_model_len


def test_kept_but_uncommitted_tokens_enter_the_cache_only_on_commit(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer)
    history, step = prompt(8), [3, 4, 5, 6, 7, 8, 9, 10, 11]  # 17 tokens: blocks 0-3 full after the step
    sid = engine.add_sequence(history)
    engine.score(sid, step, keep=True, commit=False)  # e.g. a step awaiting its conformal decision
    seq = engine.seqs[sid]
    assert seq.num_committed == len(history) and seq.num_cached_blocks == 2
    engine.commit(sid)  # accepted
    assert seq.num_cached_blocks == 4
    draft = engine.add_sequence(history)
    out = gen(engine, params=SamplingParams(max_tokens=9, seed=1, ignore_eos=True), seq_id=draft, commit=False)
    assert engine.seqs[draft].num_cached_blocks == 2  # unverified draft tokens stay out of the cache
    engine.truncate(draft, len(history))  # rejected
    assert engine.token_ids(draft) == history and len(out.token_ids) == 9


def test_samples_of_one_prompt_share_its_partial_tail(tiny_model, tokenizer):
    """N samples of one prompt: the first computes the prompt, the others wait a step, take its
    full blocks and a copy of its partial tail block, and feed only their last prompt token; their
    samples are those of an engine that computes every prompt in full."""
    p = prompt(14)  # 3 full blocks of 4 and a tail of 2
    params = [SamplingParams(temperature=1.0, max_tokens=6, seed=s, ignore_eos=True) for s in range(5)]
    outputs, processed = [], []
    for caching in (True, False):
        engine = make_engine(tiny_model, tokenizer, enable_prefix_caching=caching)
        ids = [engine.add_request(p, sp) for sp in params]
        done = run_all(engine)
        outputs.append([done[i].token_ids for i in ids])
        processed.append(engine.metrics.num_tokens_processed)
    assert outputs[0] == outputs[1]
    assert processed[1] - processed[0] == 4 * (14 - 1)  # each later sample fed 1 prompt token, not 14
    greedy = make_engine(tiny_model, tokenizer)
    ids = [greedy.add_request(p, GREEDY) for _ in range(4)]
    done = run_all(greedy)
    assert all(done[i].token_ids == tiny_model.greedy_reference(p, 8) for i in ids)
