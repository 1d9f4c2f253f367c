"""step_score / linear_step_score against their twins at scoring sizes (T=512 step tokens; also T=24,
one reasoning step, for linear_step_score).

Run: pytest benchmarks/bench_score.py --benchmark-enable --benchmark-columns=median,iqr,rounds
"""
import pytest
import torch

import a1_ext  # noqa: F401
from a1_ext import ops, reference
from memory import peak_extra_mb

NUM_TOKENS = 512


def _score_inputs(vocab: int):
    torch.manual_seed(0)
    logits = torch.randn(NUM_TOKENS, vocab) * 3
    token_ids = torch.randint(0, vocab, (NUM_TOKENS,))
    cu_seqlens = torch.tensor([0, 128, 300, NUM_TOKENS], dtype=torch.int32)
    return logits, token_ids, cu_seqlens


@pytest.mark.parametrize("vocab", [49152, 152064])
@pytest.mark.parametrize("impl", ["kernel", "twin"])
def test_step_score(benchmark, vocab, impl):
    logits, token_ids, cu_seqlens = _score_inputs(vocab)
    fn = ops.step_score if impl == "kernel" else reference.step_score
    benchmark.group = f"step_score T={NUM_TOKENS} V={vocab}"
    setup = f"logits = torch.randn({NUM_TOKENS}, {vocab}); ids = torch.randint(0, {vocab}, ({NUM_TOKENS},))"
    call = f"{'ops' if impl == 'kernel' else 'reference'}.step_score(logits, ids, torch.tensor([0, {NUM_TOKENS}]), 1.0)"
    benchmark.extra_info["peak_extra_MB"] = peak_extra_mb(setup, call)
    benchmark(fn, logits, token_ids, cu_seqlens, 1.0)


@pytest.mark.parametrize("vocab", [49152, 152064])
@pytest.mark.parametrize("impl", ["kernel", "twin"])
@pytest.mark.parametrize("num_tokens", [24, NUM_TOKENS])  # one reasoning step; a long scored segment
def test_linear_step_score(benchmark, vocab, impl, num_tokens):
    torch.manual_seed(1)
    hidden_size = 576  # SmolLM2-135M
    hidden = torch.randn(num_tokens, hidden_size)
    lm_head = torch.randn(vocab, hidden_size) / hidden_size**0.5
    token_ids = torch.randint(0, vocab, (num_tokens,))
    cu_seqlens = torch.tensor([0, num_tokens // 3, num_tokens], dtype=torch.int32)
    fn = ops.linear_step_score if impl == "kernel" else reference.linear_step_score
    benchmark.group = f"linear_step_score T={num_tokens} H={hidden_size} V={vocab}"
    setup = (f"hidden = torch.randn({num_tokens}, {hidden_size}); lm_head = torch.randn({vocab}, {hidden_size}); "
             f"ids = torch.randint(0, {vocab}, ({num_tokens},))")
    call = (f"{'ops' if impl == 'kernel' else 'reference'}.linear_step_score("
            f"hidden, lm_head, ids, torch.tensor([0, {num_tokens}]), 1.0, 4096)")
    benchmark.extra_info["peak_extra_MB"] = peak_extra_mb(setup, call)
    benchmark(fn, hidden, lm_head, token_ids, cu_seqlens, 1.0, 4096)
