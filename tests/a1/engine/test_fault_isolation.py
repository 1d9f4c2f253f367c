"""One bad request never breaks the engine: validation at submission against the model, failed
steps fail only their requests (the engine serves the others and new ones), and a batch that fails
validation partway leaves nothing behind."""
import asyncio
import math
import time

import pytest
import torch

import a1.engine.llm_engine as llm_engine_module
from a1 import LLM
from a1.engine import EngineConfig, LLMEngine, RequestFailed, RequestOutput, SamplingParams
from a1.engine.async_engine import AsyncEngine
from fake_lm import FakeTokenizer, Loaded, TinyLM

POISON = 47  # NaNLM's forward returns NaN on the rows of this token


class NaNLM(TinyLM):
    """TinyLM whose hidden state is NaN on every row fed the POISON token."""

    def forward(self, input_ids, positions, kv_caches, meta):
        hidden = super().forward(input_ids, positions, kv_caches, meta)
        return torch.where((input_ids == POISON).unsqueeze(1), torch.full_like(hidden, math.nan), hidden)


class NoBosTokenizer(FakeTokenizer):
    """Encodes "" to no tokens at all (like tokenizers that add no BOS)."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return super().encode(text, add_special_tokens=False)


@pytest.fixture(scope="module")
def nan_model() -> NaNLM:
    return NaNLM(seed=0)


def make_engine(model, tokenizer, **kw) -> LLMEngine:
    config = dict(num_blocks=64, block_size=4, max_num_batched_tokens=32)
    config.update(kw)
    return LLMEngine(model, tokenizer, EngineConfig(**config))


def make_llm(model, tokenizer) -> LLM:
    return LLM(Loaded(model, tokenizer, model.config), block_size=4, kv_cache_gb=0.001, max_num_batched_tokens=32)


def run_all(engine: LLMEngine) -> dict:
    outputs = {}
    while engine.has_unfinished():
        for out in engine.step():
            outputs[out.request_id if isinstance(out, RequestOutput) else ("score", out.seq_id)] = out
    return outputs


def assert_clean(engine: LLMEngine) -> None:
    assert not engine.seqs and not engine._ready and not engine.has_unfinished()
    assert engine.block_manager.num_used_blocks == 0


GOOD = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)


# ---------------------------------------------------------------------- (a) validation
def test_huge_top_k_means_no_top_k(tiny_model, tokenizer):
    llm = make_llm(tiny_model, tokenizer)
    out = llm.generate(["hi"], SamplingParams(top_k=2**70, max_tokens=4, seed=3, ignore_eos=True))[0]
    plain = llm.generate(["hi"], SamplingParams(top_k=0, max_tokens=4, seed=3, ignore_eos=True))[0]
    assert out.token_ids == plain.token_ids and out.finish_reason == "length"
    assert llm.generate(["hello"], GOOD)[0].token_ids == tiny_model.greedy_reference(tokenizer.encode("hello", True), 4)
    assert_clean(llm.engine)


def test_stop_token_id_outside_vocab_is_refused(tiny_model, tokenizer):
    llm = make_llm(tiny_model, tokenizer)
    with pytest.raises(ValueError, match="stop_token_ids"):
        llm.generate(["hi"], SamplingParams(stop_token_ids=[10**6]))
    assert_clean(llm.engine)
    engine = make_engine(tiny_model, tokenizer)
    with pytest.raises(ValueError, match="stop_token_ids"):
        engine.add_request([0, 3], SamplingParams(stop_token_ids=[48]))
    assert_clean(engine)
    assert llm.generate(["hello"], GOOD)[0].finish_reason == "length"


def test_score_temperature_must_be_finite_and_positive(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer)
    llm = make_llm(tiny_model, tokenizer)
    for temperature in (math.inf, math.nan, 0.0, -1.0):
        sid = engine.add_sequence([0, 3, 4])
        with pytest.raises(ValueError, match="temperature"):
            engine.submit_score(sid, [5, 6], temperature=temperature)
        assert not engine.has_unfinished() and engine.token_ids(sid) == [0, 3, 4]
        assert engine.score(sid, [5, 6], keep=False).num_tokens == 2
        engine.free(sid)
        with pytest.raises(ValueError, match="temperature"):
            llm.score([0, 3, 4], [5, 6], temperature=temperature)
        assert_clean(llm.engine)


def test_max_model_len_beyond_the_positions_is_refused(tiny_model, tokenizer):
    with pytest.raises(ValueError, match="max_model_len"):
        make_engine(tiny_model, tokenizer, max_model_len=10**6)
    with pytest.raises(ValueError, match="max_model_len"):
        LLM(Loaded(tiny_model, tokenizer, tiny_model.config), kv_cache_gb=0.001, max_model_len=10**6)
    assert make_engine(tiny_model, tokenizer, max_model_len=512).max_model_len == 64 * 4


def test_kv_budget_beyond_memory_is_refused_at_once(tiny_model, tokenizer, monkeypatch):
    real = llm_engine_module.BlockManager

    def guarded(num_blocks, *args, **kwargs):  # today's code would build ~1e11 blocks here
        assert num_blocks < 10**7, f"built a pool of {num_blocks} blocks"
        return real(num_blocks, *args, **kwargs)

    monkeypatch.setattr(llm_engine_module, "BlockManager", guarded)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="kv_cache_gb"):
        LLMEngine(tiny_model, tokenizer, EngineConfig(kv_cache_gb=1e6))
    with pytest.raises(ValueError, match="kv_cache_gb"):
        LLM(Loaded(tiny_model, tokenizer, tiny_model.config), kv_cache_gb=1e6)
    with pytest.raises(ValueError, match="num_blocks"):
        LLMEngine(tiny_model, tokenizer, EngineConfig(num_blocks=10**12))
    assert time.perf_counter() - t0 < 5


# ---------------------------------------------------------------------- (b) failed steps
def test_nan_logits_fail_only_their_request(nan_model, tokenizer):
    engine = make_engine(nan_model, tokenizer)
    good = engine.add_request([0, 3, 4, 5], GOOD)
    bad = engine.add_request([0, 6, POISON], GOOD)  # its sampled row is NaN
    kept = engine.add_sequence([0, 7, 8])
    kept_bad = engine.add_request([POISON], GOOD, seq_id=kept)
    outs = run_all(engine)
    assert outs[good].finish_reason == "length" and outs[good].error is None
    assert outs[good].token_ids == nan_model.greedy_reference([0, 3, 4, 5], 4)
    for sid in (bad, kept_bad):
        out = outs[sid]
        assert isinstance(out, RequestOutput) and out.request_id == sid
        assert out.finish_reason == "error" and out.token_ids == [] and isinstance(out.error, FloatingPointError)
        assert not engine.is_live(sid)
    assert outs[bad].prompt_token_ids == [0, 6, POISON] and outs[kept_bad].prompt_token_ids is None
    assert_clean(engine)
    # scoring: the row fed POISON is NaN
    sid = engine.add_sequence([0, 3, 4])
    other = engine.add_sequence([0, 3, 5])
    engine.submit_score(other, [9, 10], keep=False)
    with pytest.raises(RequestFailed, match=f"sequence {sid}"):
        engine.score(sid, [5, POISON, 6])
    assert not engine.is_live(sid)
    outs = run_all(engine)
    result = outs[("score", other)]
    assert result.error is None and result.num_tokens == 2
    engine.free(other)
    assert_clean(engine)
    assert run_all(engine) == {}
    assert gen_ok(engine)


def gen_ok(engine: LLMEngine) -> bool:
    sid = engine.add_request([0, 9, 10], GOOD)
    out = run_all(engine)[sid]
    return out.error is None and len(out.token_ids) == 4


def test_nan_logits_in_llm_generate_and_score(nan_model, tokenizer):
    llm = make_llm(nan_model, tokenizer)
    with pytest.raises(RequestFailed, match=r"prompts \[1\]") as info:
        llm.generate([[0, 3, 4], [0, 5, POISON], [0, 6, 7]], GOOD)
    outs = info.value.outputs
    assert [o.finish_reason for o in outs] == ["length", "error", "length"]
    assert outs[0].token_ids == nan_model.greedy_reference([0, 3, 4], 4)
    assert_clean(llm.engine)
    with pytest.raises(RequestFailed, match=r"pairs \[0\]") as info:
        llm.score([[0, 3], [0, 4]], [[5, POISON, 6], [5, 6]])
    assert info.value.outputs[1].num_tokens == 2 and info.value.outputs[0].error is not None
    assert_clean(llm.engine)
    assert llm.generate(["hello"], GOOD)[0].finish_reason == "length"


def test_injected_step_failure_in_llm(tiny_model, tokenizer, monkeypatch):
    llm = make_llm(tiny_model, tokenizer)
    runner = llm.engine.runner
    real_run = runner.run

    def run(batch):
        if any(seq.token_ids[:2] == [0, 40] for seq in batch.seqs):
            raise RuntimeError("boom")
        return real_run(batch)

    monkeypatch.setattr(runner, "run", run)
    with pytest.raises(RequestFailed, match="boom") as info:
        llm.generate([[0, 40, 3]], GOOD)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.outputs[0].finish_reason == "error"
    assert_clean(llm.engine)
    out = llm.generate(["hello"], GOOD)[0]
    assert out.token_ids == tiny_model.greedy_reference(tokenizer.encode("hello", True), 4)
    with pytest.raises(RequestFailed, match="boom"):
        llm.score([0, 40], [3, 4])
    assert_clean(llm.engine)
    assert llm.score([0, 3], [4, 5]).num_tokens == 2


def test_async_engine_fails_only_the_bad_future(nan_model, tiny_model, tokenizer, monkeypatch):
    async def main():
        async with AsyncEngine.from_model(nan_model, tokenizer, EngineConfig(num_blocks=64, block_size=4)) as engine:
            long = asyncio.ensure_future(engine.generate([0, 3, 4], SamplingParams(max_tokens=12, ignore_eos=True)))
            while engine.metrics.num_steps < 2:
                await asyncio.sleep(0.01)
            results = await asyncio.gather(
                engine.generate([0, 5, POISON], GOOD), engine.generate([0, 6, 7], GOOD), return_exceptions=True
            )
            seq = await engine.add_sequence([0, 3, 4])
            with pytest.raises(RequestFailed):
                await engine.score(seq, [POISON, 5])
            assert not await engine.target.is_live(seq)
            after = await engine.generate([0, 8, 9], GOOD)
            return results, await long, after, engine

    (bad, ok), long, after, engine = asyncio.run(main())
    assert isinstance(bad, RequestFailed) and isinstance(bad.__cause__, FloatingPointError)
    assert ok.finish_reason == "length" and len(long.token_ids) == 12 and after.finish_reason == "length"
    assert_clean(engine.engine)

    async def injected():
        async with AsyncEngine.from_model(tiny_model, tokenizer, EngineConfig(num_blocks=64, block_size=4)) as engine:
            real_run = engine.engine.runner.run

            def run(batch):
                if any(seq.token_ids[:2] == [0, 40] for seq in batch.seqs):
                    raise RuntimeError("boom")
                return real_run(batch)

            monkeypatch.setattr(engine.engine.runner, "run", run)
            with pytest.raises(RequestFailed, match="boom"):
                await engine.generate([0, 40, 3], GOOD)
            return await engine.generate([0, 3, 4], GOOD), engine

    out, engine = asyncio.run(injected())
    assert out.token_ids == tiny_model.greedy_reference([0, 3, 4], 4)
    assert_clean(engine.engine)


# ---------------------------------------------------------------------- (c) all or nothing
def test_half_valid_generate_leaves_nothing(tiny_model):
    tokenizer = NoBosTokenizer()
    llm = make_llm(tiny_model, tokenizer)
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        llm.generate(["hi there", ""])
    assert_clean(llm.engine)
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        llm.generate([[0, 5], [0, 999]])
    with pytest.raises(ValueError, match="stop_token_ids"):
        llm.generate([[0, 5], [0, 6]], [GOOD, SamplingParams(stop_token_ids=[10**6])])
    assert_clean(llm.engine)
    assert llm.generate(["hello"], GOOD)[0].finish_reason == "length"


def test_half_valid_score_leaves_nothing(tiny_model, tokenizer):
    llm = make_llm(tiny_model, tokenizer)
    with pytest.raises(ValueError):
        llm.score([[0, 3], [0, 4]], [[], [999]])  # the first would leave an empty ScoreResult behind
    assert_clean(llm.engine)
    assert llm.engine.step() == []
    with pytest.raises(ValueError):
        llm.score([[0, 3], [0, 999]], [[5], [5]])  # the first sequence would be left behind
    assert_clean(llm.engine)
    assert llm.score([[0, 3], [0, 4]], [[5, 6], [7]])[1].num_tokens == 1
    assert not llm.engine.seqs and not llm.engine._ready and not llm.engine.has_unfinished()
