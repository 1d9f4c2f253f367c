"""a1::paged_attention on CPU against its pure-torch twin (a1_ext/reference.py).

Ragged batches mix decode rows, prefill chunks over a cached prefix, a full prefill and an empty
row; block tables are shuffled; caches are views with a block stride; argument misuse must raise
errors that name the argument.
"""
import math

import pytest
import torch

from a1_ext import ops, reference
from cuda_cases import assert_one_rounding_from_twin
from threads import on_threads

TOLERANCE = {
    torch.float32: dict(atol=2e-5, rtol=1e-5),
    torch.bfloat16: dict(atol=2e-2, rtol=1e-2),  # one bf16 rounding step; check_against_twin bounds how many
    torch.float16: dict(atol=2e-3, rtol=2e-3),
}

# (seq_len, q_len) per row: decode rows, prefill chunks over a cached prefix, a full prefill
# (q_len == seq_len), an empty row, rows spanning several 32-key chunks and query tiles.
RAGGED_ROWS = [(37, 1), (50, 13), (21, 21), (9, 0), (1, 1), (100, 1), (70, 40)]

# num_q_heads, num_kv_heads for GQA ratios 1, 3 and 7.
HEADS = [(2, 2), (6, 2), (7, 1)]


def paged_batch(rows, num_q_heads, num_kv_heads, head_dim, block_size, dtype, *, seed=0, kv_views=True):
    """Args of paged_attention (without scale) for rows [(seq_len, q_len)], on shuffled blocks.

    Table entries past a row's last block hold an out-of-range id: they must never be read.
    """
    g = torch.Generator().manual_seed(seed)
    blocks_per_row = [math.ceil(seq_len / block_size) for seq_len, _ in rows]
    num_blocks = sum(blocks_per_row) + 3
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    if kv_views:  # K and V interleaved per block in one tensor: a block stride of two blocks
        kv = torch.randn(num_blocks, 2, *shape[1:], generator=g).to(dtype)
        k_cache, v_cache = kv[:, 0], kv[:, 1]
    else:
        k_cache, v_cache = torch.randn(*shape, generator=g).to(dtype), torch.randn(*shape, generator=g).to(dtype)
    order = torch.randperm(num_blocks, generator=g).tolist()
    block_table = torch.full((len(rows), max(blocks_per_row) + 1), num_blocks + 7, dtype=torch.int32)
    for b, count in enumerate(blocks_per_row):
        block_table[b, :count] = torch.tensor(order[:count], dtype=torch.int32)
        order = order[count:]
    q_lens = [q_len for _, q_len in rows]
    query = torch.randn(sum(q_lens), num_q_heads, head_dim, generator=g).to(dtype)
    seq_lens = torch.tensor([seq_len for seq_len, _ in rows], dtype=torch.int32)
    query_start_loc = torch.tensor([0] + torch.tensor(q_lens).cumsum(0).tolist(), dtype=torch.int32)
    return [query, k_cache, v_cache, block_table, seq_lens, query_start_loc]


def check_against_twin(args, scale, dtype):
    out = ops.paged_attention(*args, scale)
    expected = reference.paged_attention(*args, scale)
    assert out.dtype == args[0].dtype and out.shape == args[0].shape
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])
    if dtype != torch.float32:  # the tolerance alone lets a 16-bit softmax through
        assert_one_rounding_from_twin(out, expected)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [64, 80, 128])
@pytest.mark.parametrize("block_size", [1, 16])
@pytest.mark.parametrize("num_q_heads,num_kv_heads", HEADS)
def test_ragged_batch_matches_twin(dtype, head_dim, block_size, num_q_heads, num_kv_heads):
    args = paged_batch(RAGGED_ROWS, num_q_heads, num_kv_heads, head_dim, block_size, dtype)
    check_against_twin(args, 1.0 / math.sqrt(head_dim), dtype)


@pytest.mark.parametrize("isa", ["avx2", "baseline"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("head_dim", [36, 80, 128])
def test_narrower_instruction_sets(monkeypatch, isa, dtype, head_dim):
    # The kernel is compiled for AVX-512, AVX2 and SSE2 (vector widths 16, 8 and 4); A1_CPU_ISA
    # caps the choice, so every width is checked on a machine that has them all.
    monkeypatch.setenv("A1_CPU_ISA", isa)
    args = paged_batch(RAGGED_ROWS, 7, 1, head_dim, 16, dtype, seed=7)
    check_against_twin(args, 1.0 / math.sqrt(head_dim), dtype)
    args = paged_batch(RAGGED_ROWS, 6, 2, head_dim, 1, dtype, seed=8)
    check_against_twin(args, 1.0 / math.sqrt(head_dim), dtype)


@pytest.mark.parametrize("head_dim", [8, 36, 100])  # not multiples of the vector width: tail paths
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_odd_head_dim(head_dim, dtype):
    args = paged_batch(RAGGED_ROWS, 6, 2, head_dim, 16, dtype, seed=1)
    check_against_twin(args, 0.3, dtype)


def test_single_token_batch():
    args = paged_batch([(1, 1)], 4, 2, 64, 16, torch.float32, kv_views=False)
    out = check_against_twin(args, 0.125, torch.float32)
    # One visible key: the output is that key's value row, per GQA group.
    value = args[2][args[3][0, 0].long(), 0]
    torch.testing.assert_close(out[0], value.repeat_interleave(2, dim=0))


def test_sharp_softmax_rescales_across_chunks():
    # Logits with a spread of ~50 move the running max between chunks many times.
    args = paged_batch([(300, 1), (130, 70)], 8, 2, 64, 16, torch.float32, seed=2)
    check_against_twin(args, 2.0, torch.float32)


def test_non_contiguous_query():
    args = paged_batch(RAGGED_ROWS, 6, 2, 64, 16, torch.float32, seed=3)
    query = args[0]
    fused_qkv = torch.randn(query.shape[0], 6 + 2 * 2, 64)
    fused_qkv[:, :6] = query
    args[0] = fused_qkv[:, :6]  # rows of a fused QKV projection: token stride 10 * 64
    assert not args[0].is_contiguous()
    out = check_against_twin(args, 0.125, torch.float32)
    torch.testing.assert_close(out, ops.paged_attention(query, *args[1:], 0.125))
    args[0] = query.transpose(0, 1).contiguous().transpose(0, 1)  # dense, heads outermost
    torch.testing.assert_close(ops.paged_attention(*args, 0.125), out)


def test_mixed_query_and_cache_dtypes():
    args = paged_batch(RAGGED_ROWS, 6, 2, 64, 16, torch.bfloat16, seed=4)
    args[0] = args[0].float()
    check_against_twin(args, 0.125, torch.float32)


def test_int64_index_tensors_give_the_same_result():
    args = paged_batch(RAGGED_ROWS, 6, 2, 64, 16, torch.float32, seed=5)
    out = ops.paged_attention(*args, 0.125)
    wide = args[:3] + [t.long() for t in args[3:]]
    torch.testing.assert_close(ops.paged_attention(*wide, 0.125), out, atol=0, rtol=0)


def test_no_tokens():
    args = paged_batch([(5, 0), (3, 0)], 4, 2, 64, 16, torch.float32)
    assert ops.paged_attention(*args, 0.1).shape == (0, 4, 64)


def test_many_threads_match_one():
    args = paged_batch([(300, 1)] * 3 + [(200, 90)], 8, 2, 64, 16, torch.float32, seed=6)
    single = on_threads(1, lambda: ops.paged_attention(*args, 0.125))
    torch.testing.assert_close(ops.paged_attention(*args, 0.125), single, atol=0, rtol=0)


@pytest.mark.parametrize("num_q_heads,num_kv_heads", [(9, 3), (8, 2)])
def test_large_decode_batch_takes_rows_whole(num_q_heads, num_kv_heads):
    """A 32-row decode step has enough work items that each worker takes all kv heads of a row at
    once: the same outputs as the twin, and as one thread."""
    args = paged_batch([(40 + 7 * b, 1) for b in range(32)], num_q_heads, num_kv_heads, 64, 16, torch.float32,
                       seed=9)
    out = check_against_twin(args, 0.125, torch.float32)
    single = on_threads(1, lambda: ops.paged_attention(*args, 0.125))
    torch.testing.assert_close(out, single, atol=0, rtol=0)


def test_opcheck():
    args = paged_batch([(7, 1), (5, 3), (4, 0)], 4, 2, 16, 4, torch.float32)
    torch.library.opcheck(torch.ops.a1.paged_attention.default, (*args, 0.25))


# ----------------------------------------------------------------------------- argument errors
def valid_args():
    return paged_batch([(20, 1), (18, 5)], 4, 2, 32, 8, torch.float32) + [0.2]


def with_arg(index, value):
    args = valid_args()
    args[index] = value(args) if callable(value) else value
    return args


@pytest.mark.parametrize(
    "index,value,match",
    [
        (3, lambda a: a[3].float(), "block_table must be int32"),
        (4, lambda a: a[4].float(), "seq_lens must be int32"),
        (5, lambda a: a[5].float(), "query_start_loc must be int32"),
        (0, lambda a: a[0].int(), "query must be float32"),
        (2, lambda a: a[2].half(), "v_cache must be Float"),
        (0, lambda a: a[0][:, :3], r"num_q_heads=3.*num_kv_heads=2"),
        (0, lambda a: a[0][:, :, :16], r"query.size\(2\) \(head_dim=16\)"),
        (0, lambda a: a[0][0], "query must be 3-D"),
        (1, lambda a: a[1].transpose(1, 2), "k_cache must have contiguous"),
        (4, torch.tensor([20, 49], dtype=torch.int32), r"seq_lens\[1\]=49 exceeds block_table capacity"),
        (4, torch.tensor([20, 4], dtype=torch.int32), r"q_len=5.*seq_lens\[1\]=4"),
        (4, torch.tensor([20], dtype=torch.int32), "seq_lens.size"),
        (5, torch.tensor([0, 1, 5], dtype=torch.int32), r"query_start_loc\[-1\]"),
        (5, torch.tensor([0, 2, 1, 6], dtype=torch.int32), "query_start_loc.size"),
    ],
)
def test_argument_errors(index, value, match):
    with pytest.raises(RuntimeError, match=match):
        ops.paged_attention(*with_arg(index, value))


@pytest.mark.parametrize("bad_id", [-1, 1000])
def test_block_id_out_of_range(bad_id):
    args = valid_args()
    args[3][1, 2] = bad_id  # row 1 reads blocks 0..2 (18 keys of block_size 8)
    with pytest.raises(RuntimeError, match=rf"block_table\[1, 2\]={bad_id} is out of range"):
        ops.paged_attention(*args)


def test_devices_differ():
    # Only a CPU here: call the CPU kernel directly with a meta k_cache, as a mixed-device call reaching it would.
    args = valid_args()
    args[1] = args[1].to("meta")
    cpu = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    with pytest.raises(RuntimeError, match="k_cache must be on query's device"):
        torch.ops.a1.paged_attention.default.redispatch(cpu, *args)
