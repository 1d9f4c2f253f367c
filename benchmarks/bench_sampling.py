"""sample / speculative_verify against their twins at decode sizes.

Run: pytest benchmarks/bench_sampling.py --benchmark-enable --benchmark-columns=median,iqr,rounds
"""
import pytest
import torch

import a1_ext  # noqa: F401
from a1_ext import ops, reference

BATCH = 32


def _row_params(batch: int, temperature: float, top_k: int, top_p: float):
    return (
        torch.full((batch,), temperature),
        torch.full((batch,), top_k, dtype=torch.int64),
        torch.full((batch,), top_p),
        torch.arange(batch, dtype=torch.int64),
        torch.zeros(batch, dtype=torch.int64),
    )


@pytest.mark.parametrize("vocab", [49152, 152064])
@pytest.mark.parametrize("mode", ["race", "top_k_top_p"])
@pytest.mark.parametrize("impl", ["kernel", "twin"])
def test_sample(benchmark, vocab, mode, impl):
    torch.manual_seed(0)
    logits = torch.randn(BATCH, vocab) * 3
    params = _row_params(BATCH, 0.8, 0, 1.0) if mode == "race" else _row_params(BATCH, 0.8, 50, 0.9)
    fn = ops.sample if impl == "kernel" else reference.sample
    benchmark.group = f"sample B={BATCH} V={vocab} {mode}"
    benchmark(fn, logits, *params)


@pytest.mark.parametrize("impl", ["kernel", "twin"])
def test_speculative_verify(benchmark, impl):
    torch.manual_seed(1)
    vocab, num_draft = 49152, 8
    target = torch.randn(BATCH * (num_draft + 1), vocab) * 3
    drafts = torch.randint(0, vocab, (BATCH * num_draft,))
    draft_probs = torch.softmax(torch.randn(BATCH * num_draft, vocab), -1)
    cu = torch.arange(BATCH + 1) * num_draft
    fn = ops.speculative_verify if impl == "kernel" else reference.speculative_verify
    benchmark.group = f"speculative_verify B={BATCH} k={num_draft} V={vocab}"
    benchmark(fn, target, drafts, cu, draft_probs, *_row_params(BATCH, 1.0, 0, 1.0))
