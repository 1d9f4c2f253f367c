"""LLMEngine.cancel: undoing a request whose caller gave up, whatever state it reached."""
from a1.engine import EngineConfig, LLMEngine, SamplingParams
from a1.engine.sequence import SequenceStatus

PROMPT = [0] + list(range(2, 14))  # 13 tokens: 3 full blocks of 4 and a pending token


def make(model, tokenizer, **kw) -> LLMEngine:
    return LLMEngine(model, tokenizer, EngineConfig(**{"num_blocks": 64, "block_size": 4, "max_num_batched_tokens": 4, **kw}))


def test_cancel_mid_prefill_leaves_the_prefix_to_others(tiny_model, tokenizer):
    """A caller's sequence cancelled while computing its prompt keeps its computed blocks and no
    longer claims the rest: a request with the same prompt is not held back waiting for them."""
    engine = make(tiny_model, tokenizer)
    kept = engine.add_sequence(PROMPT)
    engine.add_request(params=SamplingParams(max_tokens=5, ignore_eos=True), seq_id=kept)
    engine.step()  # 4 of the 13 tokens computed
    engine.cancel(kept, len(PROMPT))
    seq = engine.seqs[kept]
    assert seq.status is SequenceStatus.IDLE and seq.task is None and engine.token_ids(kept) == PROMPT
    assert seq.num_computed_tokens == 4 and len(seq.block_table) == 1 and engine.block_manager.num_used_blocks == 1
    engine.add_request([0, 30, 31], SamplingParams(max_tokens=30, ignore_eos=True))  # keeps the batch busy
    engine.step()
    same = engine.add_request(PROMPT + [20], SamplingParams(max_tokens=2, ignore_eos=True))
    for _ in range(3):
        engine.step()
    assert engine.seqs[same].status is SequenceStatus.RUNNING and engine.seqs[same].num_computed_tokens > 4


def test_cancel_rolls_back_generated_tokens_and_their_blocks(tiny_model, tokenizer):
    engine = make(tiny_model, tokenizer, max_num_batched_tokens=64)
    kept = engine.add_sequence(PROMPT)
    engine.score(kept, [9], keep=False)  # computes the history: 3 blocks
    blocks = list(engine.seqs[kept].block_table)
    engine.add_request([20, 21], SamplingParams(max_tokens=50, ignore_eos=True), seq_id=kept)
    for _ in range(8):
        engine.step()
    assert len(engine.token_ids(kept)) > len(PROMPT) + 2
    engine.cancel(kept, len(PROMPT))  # its history before the call, appended prompt included
    assert engine.token_ids(kept) == PROMPT and engine.seqs[kept].block_table == blocks
    assert engine.block_manager.num_used_blocks == len(blocks) and not engine.has_unfinished()
    out = engine.score(kept, [9], keep=False)  # the rolled-back sequence is usable
    assert len(out.token_logprobs) == 1


def test_cancel_aborts_a_request_made_sequence_and_ignores_a_gone_one(tiny_model, tokenizer):
    engine = make(tiny_model, tokenizer)
    running = engine.add_request(PROMPT, SamplingParams(max_tokens=50, ignore_eos=True))
    done = engine.add_request([0, 3], SamplingParams(max_tokens=1))
    while engine.is_live(done):
        engine.step()
    engine.cancel(done)  # finished and released already: nothing to do, no KeyError
    engine.cancel(running)
    assert not engine.seqs and engine.block_manager.num_used_blocks == 0 and not engine.has_unfinished()
