"""Microbenchmarks: a1::paged_attention against torch SDPA on the same KV laid out contiguously
and against the pure-torch twin; a1::reshape_and_cache for one decode step.

    PYTHONPATH=. python -m pytest benchmarks/bench_paged_attention.py --benchmark-enable

Llama-like heads (Hq=32, Hkv=8, head_dim=128), fp32, block_size 16 on a shuffled block table.
decode: 16 rows of 2048 tokens, one query each. prefill: one row of 512 query tokens, causal.
Figures and ratios: benchmarks/RESULTS.md.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from a1_ext import ops, reference

NUM_Q_HEADS, NUM_KV_HEADS, HEAD_DIM, BLOCK_SIZE = 32, 8, 128, 16
SCALE = 1.0 / math.sqrt(HEAD_DIM)
CASES = {"decode": (16, 2048, 1), "prefill": (1, 512, 512)}  # batch, seq_len, q_len per row


def paged_problem(batch, seq_len, q_len, dtype=torch.float32):
    """Paged args of paged_attention and the same data as SDPA's contiguous [B, H, S, D] tensors."""
    g = torch.Generator().manual_seed(0)
    blocks_per_row = seq_len // BLOCK_SIZE
    num_blocks = batch * blocks_per_row
    k_cache = torch.randn(num_blocks, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM, generator=g).to(dtype)
    v_cache = torch.randn(num_blocks, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM, generator=g).to(dtype)
    block_table = torch.randperm(num_blocks, generator=g).to(torch.int32).reshape(batch, blocks_per_row)
    query = torch.randn(batch * q_len, NUM_Q_HEADS, HEAD_DIM, generator=g).to(dtype)
    seq_lens = torch.full((batch,), seq_len, dtype=torch.int32)
    query_start_loc = torch.arange(0, batch * q_len + 1, q_len, dtype=torch.int32)
    paged = (query, k_cache, v_cache, block_table, seq_lens, query_start_loc, SCALE)

    def contiguous(cache):  # [B, Hkv, S, D]
        rows = cache[block_table.long()].reshape(batch, seq_len, NUM_KV_HEADS, HEAD_DIM)
        return rows.transpose(1, 2).contiguous()

    sdpa_query = query.reshape(batch, q_len, NUM_Q_HEADS, HEAD_DIM).transpose(1, 2).contiguous()
    return paged, (sdpa_query, contiguous(k_cache), contiguous(v_cache))


def sdpa(query, key, value, causal):
    return F.scaled_dot_product_attention(query, key, value, is_causal=causal, scale=SCALE, enable_gqa=True)


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    paged, contiguous = paged_problem(*CASES[request.param])
    # The three implementations must agree before they are timed.
    ours = ops.paged_attention(*paged)
    batch, _, q_len = CASES[request.param]
    expected = sdpa(*contiguous, causal=q_len > 1).transpose(1, 2).reshape(ours.shape)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    return request.param, paged, contiguous


def test_paged_attention(benchmark, case):
    name, paged, _ = case
    benchmark.group = f"attention {name}"
    benchmark(ops.paged_attention, *paged)


def test_sdpa_contiguous(benchmark, case):
    name, _, contiguous = case
    benchmark.group = f"attention {name}"
    benchmark(sdpa, *contiguous, name == "prefill")


def test_twin(benchmark, case):
    name, paged, _ = case
    benchmark.group = f"attention {name}"
    benchmark(reference.paged_attention, *paged)


@pytest.mark.parametrize("impl", ["ops", "twin"])
def test_reshape_and_cache_decode(benchmark, impl):
    """One decode step of 16 rows: 16 new tokens written into a 2048-block cache."""
    g = torch.Generator().manual_seed(1)
    k_cache = torch.zeros(2048, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM)
    v_cache = torch.zeros_like(k_cache)
    qkv = torch.randn(16, NUM_Q_HEADS + 2 * NUM_KV_HEADS, HEAD_DIM, generator=g)
    key, value = qkv[:, NUM_Q_HEADS : NUM_Q_HEADS + NUM_KV_HEADS], qkv[:, NUM_Q_HEADS + NUM_KV_HEADS :]
    slots = torch.randperm(2048 * BLOCK_SIZE, generator=g)[:16]
    fn = ops.reshape_and_cache if impl == "ops" else reference.reshape_and_cache
    benchmark.group = "reshape_and_cache decode"
    benchmark(fn, key, value, k_cache, v_cache, slots)
