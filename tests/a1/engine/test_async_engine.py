"""AsyncEngine: concurrent coroutines share batches and the prefix cache."""
import asyncio

import pytest

from a1.engine import EngineConfig, SamplingParams
from a1.engine.async_engine import AsyncEngine


def make(model, tokenizer, **kw) -> AsyncEngine:
    config = dict(num_blocks=128, block_size=4, max_num_batched_tokens=64)
    config.update(kw)
    return AsyncEngine.from_model(model, tokenizer, EngineConfig(**config))


def test_sixteen_requests_store_the_shared_prompt_once(tiny_model, tokenizer):
    prompt = [0] + [2 + i for i in range(16)]  # 17 tokens: 4 full blocks of 4 + 1

    async def main():
        async with make(tiny_model, tokenizer) as engine:
            params = [SamplingParams(max_tokens=3, seed=i, ignore_eos=True) for i in range(16)]
            outs = await asyncio.gather(*(engine.generate(prompt, p) for p in params))
            return engine, outs

    engine, outs = asyncio.run(main())
    assert all(len(o.token_ids) == 3 and o.prompt_token_ids == prompt for o in outs)
    metrics = engine.metrics
    # 4 shared prompt blocks stored once + one private tail block per sample
    assert metrics.peak_blocks_used == 4 + 16
    assert metrics.prefix_cache_hit_rate == pytest.approx(15 * 16 / (16 * 17))
    assert sorted(o.metrics.num_cached_tokens for o in outs) == [0] + [16] * 15
    assert all(o.metrics.time_to_first_token is not None and o.metrics.latency >= o.metrics.time_to_first_token for o in outs)
    assert engine.engine.block_manager.num_used_blocks == 0


def test_short_request_does_not_wait_for_a_long_one(tiny_model, tokenizer):
    order = []

    async def run(engine, name, n):
        out = await engine.generate([0, 3, 4, 5], SamplingParams(max_tokens=n, ignore_eos=True))
        order.append(name)
        return out

    async def main():
        async with make(tiny_model, tokenizer) as engine:
            return await asyncio.gather(run(engine, "long", 30), run(engine, "short", 2))

    long, short = asyncio.run(main())
    assert order == ["short", "long"] and len(long.token_ids) == 30 and len(short.token_ids) == 2


def test_concurrent_score_fork_truncate(tiny_model, tokenizer):
    history, step = [0, 5, 6, 7, 8, 9, 10], [11, 12, 13, 14]

    async def sample_loop(engine, seq_id):
        """A miniature A1 turn: draft a step, score it, roll it back, draft again, keep it."""
        first = await engine.score(seq_id, step, keep=False)
        child = await engine.fork(seq_id)
        drafted = await engine.generate(params=SamplingParams(max_tokens=4, seed=seq_id, ignore_eos=True), seq_id=child)
        await engine.truncate(child, len(history))
        again = await engine.score(child, step, keep=True)
        tokens = await engine.token_ids(child)
        await engine.free(child)
        return first, drafted, again, tokens

    async def main():
        async with make(tiny_model, tokenizer) as engine:
            seqs = [await engine.add_sequence(history) for _ in range(4)]
            results = await asyncio.gather(*(sample_loop(engine, s) for s in seqs))
            for s in seqs:
                await engine.free(s)
            with pytest.raises(KeyError):
                await engine.fork(999)
            return engine, results

    engine, results = asyncio.run(main())
    lp = tiny_model.dense_logprobs(history + step)
    expected = [float(lp[len(history) - 1 + i, t]) for i, t in enumerate(step)]
    for first, drafted, again, tokens in results:
        assert first.token_logprobs == pytest.approx(expected, abs=1e-4)
        assert again.token_logprobs == pytest.approx(expected, abs=1e-4)
        assert len(drafted.token_ids) == 4 and tokens == history + step
    assert engine.engine.block_manager.num_used_blocks == 0


def test_cancelled_request_is_aborted(tiny_model, tokenizer):
    async def main():
        async with make(tiny_model, tokenizer) as engine:
            task = asyncio.ensure_future(engine.generate([0, 3, 4], SamplingParams(max_tokens=200, ignore_eos=True)))
            while engine.metrics.num_steps < 2:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            out = await engine.generate([0, 3, 4], SamplingParams(max_tokens=2))
            return engine, out

    engine, out = asyncio.run(main())
    assert len(out.token_ids) <= 2 and not engine.engine.seqs
