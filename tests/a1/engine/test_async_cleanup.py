"""AsyncEngine clean-up: close() and cancelled callers leave no blocks, no sequences and no log
noise behind, and a caller's own sequence survives the cancellation of a request on it."""
import asyncio
import gc

from a1.engine import EngineConfig, RequestOutput, SamplingParams
from a1.engine.async_engine import AsyncEngine

LONG = SamplingParams(max_tokens=200, ignore_eos=True)


def make(model, tokenizer) -> AsyncEngine:
    return AsyncEngine.from_model(model, tokenizer, EngineConfig(num_blocks=128, block_size=4, max_num_batched_tokens=64))


async def computed_sequence(engine: AsyncEngine, token_ids: list[int]) -> int:
    """A caller's sequence whose history is computed (it holds blocks): scoring without keeping."""
    seq_id = await engine.add_sequence(token_ids)
    await engine.score(seq_id, [9], keep=False)
    return seq_id


async def steps(engine: AsyncEngine, n: int) -> None:
    start = engine.metrics.num_steps
    while engine.metrics.num_steps < start + n:
        await asyncio.sleep(0.005)


def test_close_frees_the_blocks_of_requests_in_flight(tiny_model, tokenizer):
    history = [0, 5, 6, 7, 8]

    async def main():
        engine = make(tiny_model, tokenizer)
        kept = await computed_sequence(engine, history)
        blocks = list(engine.engine.seqs[kept].block_table)
        tasks = [asyncio.ensure_future(engine.generate([0, 3, 4, i], LONG)) for i in range(3)]
        tasks.append(asyncio.ensure_future(engine.generate([11, 12], LONG, seq_id=kept)))
        await steps(engine, 3)
        await engine.close()
        return engine, kept, blocks, await asyncio.gather(*tasks, return_exceptions=True)

    engine, kept, blocks, results = asyncio.run(main())
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    inner = engine.engine
    # the one-shot requests are gone; the caller's sequence is back to its history and blocks
    assert list(inner.seqs) == [kept] and inner.token_ids(kept) == history
    assert inner.seqs[kept].block_table == blocks and inner.block_manager.num_used_blocks == len(blocks)
    inner.free(kept)
    assert inner.block_manager.num_used_blocks == 0 and not inner.has_unfinished()


def test_cancelling_a_request_that_finished_in_the_same_step_logs_nothing(tiny_model, tokenizer):
    """The caller is cancelled while the step that finishes its request runs (in the worker thread)."""
    reports = []
    history = [0, 5, 6, 7, 8, 9]

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reports.append(context))
        engine = make(tiny_model, tokenizer)
        kept = await computed_sequence(engine, history)
        blocks = list(engine.engine.seqs[kept].block_table)
        victims: list[asyncio.Task] = []
        step = engine.pair.step

        async def cancel(tasks):
            for task in tasks:
                task.cancel()
            for _ in range(3):  # let each task run its CancelledError handler
                await asyncio.sleep(0)

        def step_then_cancel():
            outs = step()  # (engine, output) pairs
            if victims and any(isinstance(out, RequestOutput) for _, out in outs):
                asyncio.run_coroutine_threadsafe(cancel(victims), loop).result()
                victims.clear()
            return outs

        engine.pair.step = step_then_cancel
        one = SamplingParams(max_tokens=1)
        victims += [asyncio.ensure_future(engine.generate([0, 3, 4], one)),
                    asyncio.ensure_future(engine.generate(params=one, seq_id=kept))]
        results = await asyncio.gather(*victims, return_exceptions=True)
        after = await engine.generate([0, 3], SamplingParams(max_tokens=2))  # the loop applies what the cancel left
        tokens = await engine.token_ids(kept)
        gc.collect()  # a future holding an unretrieved exception reports it when collected
        await engine.close()
        return engine, kept, blocks, results, after, tokens

    engine, kept, blocks, results, after, tokens = asyncio.run(main())
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert reports == [] and len(after.token_ids) >= 1
    assert tokens == history and engine.engine.seqs[kept].block_table == blocks
    assert list(engine.engine.seqs) == [kept]


def test_cancelled_generate_on_a_kept_sequence_rolls_it_back(tiny_model, tokenizer):
    history = [0, 5, 6, 7, 8, 9, 10]

    async def main():
        async with make(tiny_model, tokenizer) as engine:
            kept = await computed_sequence(engine, history)
            blocks = list(engine.engine.seqs[kept].block_table)
            task = asyncio.ensure_future(engine.generate([11, 12, 13], LONG, seq_id=kept))
            await steps(engine, 3)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            tokens, live = await engine.token_ids(kept), await engine.target.is_live(kept)
            state = list(engine.engine.seqs[kept].block_table), len(engine.engine.scheduler.running)
            again = await engine.generate(params=SamplingParams(max_tokens=2, ignore_eos=True), seq_id=kept)
            return tokens, live, blocks, state, again

    tokens, live, blocks, (blocks_after, running), again = asyncio.run(main())
    assert live and tokens == history and blocks_after == blocks and running == 0
    assert again.num_prompt_tokens == len(history) and len(again.token_ids) == 2


def test_cancelled_score_rolls_back_and_a_released_sequence_goes(tiny_model, tokenizer):
    history = [0, 5, 6, 7, 8]

    async def main():
        async with make(tiny_model, tokenizer) as engine:
            kept = await computed_sequence(engine, history)
            given = await computed_sequence(engine, history)
            loop, step, victims = asyncio.get_running_loop(), engine.pair.step, []

            def step_then_cancel():  # cancel the score while its first chunk (of two) runs
                outs = step()
                if victims:
                    loop.call_soon_threadsafe(victims.pop().cancel)
                return outs

            engine.pair.step = step_then_cancel
            victims.append(asyncio.ensure_future(engine.score(kept, [9] * 100, keep=True)))
            scored = await asyncio.gather(*victims, return_exceptions=True)
            engine.pair.step = step
            released = asyncio.ensure_future(engine.generate(params=LONG, seq_id=given, release=True))
            await steps(engine, 2)
            released.cancel()
            await asyncio.gather(released, return_exceptions=True)
            return engine, kept, given, scored, await engine.token_ids(kept), await engine.target.is_live(given)

    engine, kept, given, scored, tokens, given_live = asyncio.run(main())
    assert isinstance(scored[0], asyncio.CancelledError) and tokens == history
    assert not given_live and list(engine.engine.seqs) == [kept] and not engine.engine.has_unfinished()
