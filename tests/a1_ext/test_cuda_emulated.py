"""The CUDA kernels, run on the CPU by the emulator in cuda_emu/, against the pure-torch twins.

No GPU is needed: this checks the kernels' logic (indexing, reductions, filters, the Philox
stream, the accept chain, the GGUF block decoding) on every machine with g++ and the CUDA headers;
test_cuda_ops.py runs the same comparisons on a real device when there is one. The quantized ops
are also compared with their CPU kernels (the compiled a1_ext) and with the gguf package. Sizes are small because every CUDA
thread is an OS thread here.
"""
from __future__ import annotations

import pytest
import torch

from cuda_cases import (activation_case, assert_close_up_to_rounding, attention_case, norm_case, reference, rotary_case,
                        sampling_params, score_case, verify_case)
from cuda_emu import build
from quant_cases import FORMATS as QUANT_NAMES
from quant_cases import assert_bit_equal, finite_blocks, gguf_dequantize, identity_q8_0, in_features, random_blocks

if build.cuda_include_dir() is None:
    pytest.skip("CUDA toolkit headers not found: the emulated kernels cannot be built", allow_module_level=True)

from cuda_emu import ops_emu as emu  # noqa: E402  (after the skip: importing builds nothing yet)
from a1_ext import ops  # noqa: E402  (the CPU kernels of the quantized ops, compared below)
from a1_ext.quant_formats import QUANT_FORMATS  # noqa: E402

FLOATS = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


@pytest.mark.parametrize("in_dtype,cache_dtype", [(torch.float32, torch.float32), (torch.float32, torch.bfloat16),
                                                  (torch.float16, torch.float16)])
@pytest.mark.parametrize("block_size", [1, 16])
def test_reshape_and_cache(in_dtype, cache_dtype, block_size):
    g = torch.Generator().manual_seed(0)
    key, value = torch.randn(7, 2, 80, generator=g).to(in_dtype), torch.randn(7, 2, 80, generator=g).to(in_dtype)
    num_blocks = 9 // block_size + 2
    k_cache, v_cache = torch.zeros(num_blocks, block_size, 2, 80, dtype=cache_dtype), torch.zeros(
        num_blocks, block_size, 2, 80, dtype=cache_dtype)
    slots = torch.tensor([3, -1, 0, 5, num_blocks * block_size - 1, -1, 8])
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    reference.reshape_and_cache(key, value, k_ref, v_ref, slots)
    emu.reshape_and_cache(key[:, :, :], value.transpose(0, 1).contiguous().transpose(0, 1), k_cache, v_cache, slots)
    assert torch.equal(k_cache, k_ref) and torch.equal(v_cache, v_ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_copy_blocks(dtype):
    g = torch.Generator().manual_seed(1)
    caches = [torch.randn(6, 4, 2, 8, generator=g).to(dtype) for _ in range(6)]
    k_caches, v_caches = caches[:3], caches[3:]
    mapping = torch.tensor([[0, 3], [5, 1], [2, 2]])
    k_ref, v_ref = [c.clone() for c in k_caches], [c.clone() for c in v_caches]
    reference.copy_blocks(k_ref, v_ref, mapping)
    emu.copy_blocks(k_caches, v_caches, mapping)
    for got, want in zip(k_caches + v_caches, k_ref + v_ref):
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("head_dim,block_size", [(64, 16), (80, 1), (128, 16)])
def test_paged_attention_ragged(dtype, head_dim, block_size):
    # decode rows (q_len 1), a prefill chunk over cached history, an empty row and a fresh prompt
    args = attention_case(dtype, head_dim, block_size, q_lens=[1, 5, 0, 3, 1], seq_lens=[9, 21, 4, 3, 1])
    want = reference.paged_attention(*args)
    got = emu.paged_attention(*args)
    torch.testing.assert_close(got.float(), want.float(), atol=TOL[dtype] * 5, rtol=TOL[dtype] * 5)


def test_paged_attention_split_kv():
    # Few (token, head) pairs and a long context: the emulated 2-SM device takes the split-KV path.
    args = attention_case(torch.float32, 64, 16, q_lens=[1, 1], seq_lens=[700, 300], num_q_heads=2, num_kv_heads=1)
    assert emu.attention_splits(2, 2, args[3].shape[1] * 16) > 1
    torch.testing.assert_close(emu.paged_attention(*args), reference.paged_attention(*args), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("hidden,row_stride", [(64, None), (200, 256), (4095, None)])
def test_rms_norm(dtype, hidden, row_stride):
    x, residual, weight = norm_case(3, hidden, dtype, row_stride=row_stride)
    assert_close_up_to_rounding(emu.rms_norm(x, weight, 1e-5), reference.rms_norm(x, weight, 1e-5), dtype)
    x_want, residual_want = x.clone(), residual.clone()
    reference.fused_add_rms_norm(x_want, residual_want, weight, 1e-5)
    emu.fused_add_rms_norm(x, residual, weight, 1e-5)
    assert torch.equal(residual, residual_want)
    assert_close_up_to_rounding(x, x_want, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("width,row_stride", [(64, None), (1536, None), (100, 250)])
def test_silu_and_mul(dtype, width, row_stride):
    x = activation_case(3, (row_stride or 2 * width) // 2, dtype)[:, : 2 * width]
    assert_close_up_to_rounding(emu.silu_and_mul(x), reference.silu_and_mul(x), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("head_dim", [6, 64, 128])
def test_rotary_embedding(dtype, head_dim):
    qkv, cos, sin = rotary_case(3, 12, 3, head_dim, dtype)
    qk, want, value_before = qkv[:, :12], qkv[:, :12].clone(), qkv[:, 12:].clone()
    reference.rotary_embedding(want, cos, sin)
    emu.rotary_embedding(qk, cos, sin)
    assert_close_up_to_rounding(qk, want, dtype)
    assert torch.equal(qkv[:, 12:], value_before)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("vocab", [1, 111, 1000])
def test_step_score(dtype, vocab):
    logits, tokens, cu = score_case(6, vocab, [2, 0, 4], dtype)
    got = emu.step_score(logits, tokens, cu, 0.7)
    want = reference.step_score(logits, tokens, cu, 0.7)
    torch.testing.assert_close(got[0], want[0], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got[1], want[1], atol=1e-4, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("hidden_size,vocab,chunk", [(40, 150, 64), (64, 600, 64), (24, 70, 4096)])
def test_linear_step_score(dtype, hidden_size, vocab, chunk):
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(70, hidden_size, generator=g).to(dtype)
    lm_head = (torch.randn(vocab, hidden_size, generator=g) / hidden_size**0.5).to(dtype)
    tokens = torch.randint(0, vocab, (70,), generator=g)
    cu = torch.tensor([0, 30, 30, 70])
    got = emu.linear_step_score(hidden, lm_head, tokens, cu, 0.9, chunk)
    want = reference.linear_step_score(hidden, lm_head, tokens, cu, 0.9, chunk)
    torch.testing.assert_close(got[0], want[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1], want[1], atol=1e-4, rtol=1e-4, equal_nan=True)


FILTERS = [  # (temperature, top_k, top_p) per row: greedy, plain, top-k, top-p, both, top-k = 1
    [0.0, 1.0, 0.7, 1.3, 0.9, 1.0],
    [0, 0, 5, 0, 20, 1],
    [1.0, 1.0, 1.0, 0.8, 0.6, 1.0],
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("vocab", [111, 1000])
def test_sample_matches_twin(dtype, vocab):
    logits, _, _ = score_case(6, vocab, [6], dtype, seed=5)
    params = sampling_params(6, *FILTERS)
    ids, logprob = emu.sample(logits, *params)
    want_ids, want_logprob = reference.sample(logits, *params)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(logprob, want_logprob, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("vocab", [7, 97, 1031])
def test_sampling_probs_matches_twin(dtype, vocab):
    logits, _, _ = score_case(6, vocab, [6], dtype, seed=6)
    temperature, top_k, top_p, _, _ = sampling_params(6, [0.0, 1.0, 0.7, 1.3, 1.0, 0.5], [0, 0, 5, 0, 12, 3],
                                                      [1.0, 1.0, 1.0, 0.8, 0.9, 0.5])
    probs, status = emu.sampling_probs(logits, temperature, top_k, top_p)
    want = reference.sampling_probs(logits, temperature, top_k, top_p)
    assert torch.equal(status, torch.zeros(6, dtype=torch.int64))
    torch.testing.assert_close(probs, want, atol=2e-6, rtol=1e-5)
    assert torch.equal(probs > 0, want > 0)
    logits[2, 3] = float("nan")
    assert emu.sampling_probs(logits, temperature, top_k, top_p)[1].tolist() == [0, 0, -1, 0, 0, 0]


def test_sample_ties_in_top_k_are_kept():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.5, 3.0, 2.0] * 4])  # the 2nd largest value is tied 12 times
    params = sampling_params(1, 1.0, 2, 1.0)
    assert torch.equal(emu.sample(logits, *params)[0], reference.sample(logits, *params)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_draft_probs", [True, False])
@pytest.mark.parametrize("temperature,top_k,top_p", [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.8, 10, 0.9)])
def test_speculative_verify_matches_twin(dtype, with_draft_probs, temperature, top_k, top_p):
    case = verify_case([3, 0, 2, 4], 97, dtype, with_draft_probs, temperature=temperature, top_k=top_k, top_p=top_p)
    out_ids, num_accepted, target_logprob = emu.speculative_verify(*case)
    want_ids, want_accepted, want_logprob = reference.speculative_verify(*case)
    assert torch.equal(num_accepted, want_accepted)
    assert torch.equal(out_ids, want_ids)
    torch.testing.assert_close(target_logprob, want_logprob, atol=1e-5, rtol=1e-5)


def test_speculative_verify_mixed_requests():
    # Greedy and sampled requests in one batch, per-request filters.
    case = list(verify_case([2, 3, 1], 64, seed=4))
    case[4:7] = sampling_params(3, [0.0, 1.0, 0.5], [0, 3, 0], [1.0, 1.0, 0.7], seed=11)[:3]
    got, want = emu.speculative_verify(*case), reference.speculative_verify(*case)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


# ------------------------------------------------------------------------------------------ quantized ops
# GGUF blocks (quant_cases.py): dequantize must equal gguf.quants bit for bit (edge scales, every
# nibble); quant_linear matches the twin to fp32 summation-order rounding (a wrong weight is off by ~0.1).
QUANT_GEMV_MAX = 16  # kQuantGemvMaxTokens (csrc/quant/quant_cuda.h); test_quant_gemv_limit_is_tested checks it


def _blocks_per_row(name: str) -> int:
    return 2 if QUANT_FORMATS[name].block_size == 256 else 5


def test_quant_gemv_limit_is_tested():
    assert emu.quant_gemv_max_tokens() == QUANT_GEMV_MAX


@pytest.mark.parametrize("name", QUANT_NAMES)
def test_dequantize_bit_exact(name):
    blocks = random_blocks(name, rows=37, blocks_per_row=3, seed=1)
    want = gguf_dequantize(blocks, name)
    got = emu.dequantize(blocks)
    assert_bit_equal(got, want)
    assert_bit_equal(got, reference.dequantize(blocks))
    assert_bit_equal(got, ops.dequantize(blocks))


@pytest.mark.parametrize("name", QUANT_NAMES)
def test_dequantize_rows(name):
    blocks = random_blocks(name, rows=11, blocks_per_row=2, seed=2)
    full = gguf_dequantize(blocks, name)
    for rows in (torch.tensor([3, 0, 10, 3]), torch.tensor([7], dtype=torch.int32), torch.tensor([], dtype=torch.int64)):
        assert_bit_equal(emu.dequantize(blocks, rows), full[rows.long()])
    # a slice of rows, as quant_linear's GEMM path takes them
    assert_bit_equal(emu.dequantize(blocks, row_begin=4, count=5), full[4:9])


@pytest.mark.parametrize("name", QUANT_NAMES)
@pytest.mark.parametrize("tokens", [1, 3, QUANT_GEMV_MAX, QUANT_GEMV_MAX + 1, 40])
def test_quant_linear_matches_twin(name, tokens):
    nb = _blocks_per_row(name)
    blocks = finite_blocks(name, 53, nb, seed=tokens)  # N = 53: odd, not a multiple of the rows per CTA
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, in_features(name, nb), generator=g)
    bias = torch.randn(53, generator=g)
    want = reference.quant_linear(x, blocks, bias)
    got = emu.quant_linear(x, blocks, bias)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(got, ops.quant_linear(x, blocks, bias), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(emu.quant_linear(x, blocks), want - bias, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name,blocks_per_row", [("Q4_0", 1), ("Q8_0", 40), ("Q4_K", 1), ("Q6_K", 5)])
@pytest.mark.parametrize("tokens", [1, 2, 7, 11])
def test_quant_gemv_row_widths(name, blocks_per_row, tokens):
    # 1 to 40 groups per row: several rows per warp (1 or 8 lanes each), and lanes looping over groups;
    # every register tile of token rows (1, 2, 8, 16), the last two partly used.
    blocks = finite_blocks(name, 19, blocks_per_row, seed=blocks_per_row)
    x = torch.randn(tokens, in_features(name, blocks_per_row), generator=torch.Generator().manual_seed(tokens))
    torch.testing.assert_close(emu.quant_linear(x, blocks), reference.quant_linear(x, blocks), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", ["Q4_1", "Q5_K"])
def test_quant_linear_gemm_in_slices(name):
    # A scratch of 7 weight rows: the GEMM path dequantizes and multiplies 53 rows in 8 slices.
    nb = _blocks_per_row(name)
    blocks = finite_blocks(name, 53, nb, seed=3)
    x = torch.randn(20, in_features(name, nb), generator=torch.Generator().manual_seed(3))
    bias = torch.randn(53)
    got = emu.quant_linear(x, blocks, bias, scratch_floats=7 * in_features(name, nb))
    torch.testing.assert_close(got, reference.quant_linear(x, blocks, bias), atol=1e-3, rtol=1e-4)


def activation_rows(tokens: int, seed: int) -> torch.Tensor:
    """Token rows over 40 decades, with ties to even, a zero group, a subnormal group and a group of
    equal values: the rounding's edge cases."""
    K = 32 * 19
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, K, generator=g) * torch.logspace(-30, 10, K)[torch.randperm(K, generator=g)]
    x[0, :6] = torch.tensor([127.0, 0.5, 1.5, 2.5, -2.5, 126.6])
    x[0, 6:32] = 0.25
    x[0, 32:64] = 0.0
    x[-1, 100:132] = 1e-40
    return x


@pytest.mark.parametrize("tokens", [1, 2, QUANT_GEMV_MAX + 1])
def test_round_activations_bit_exact(tokens):
    x = activation_rows(tokens, tokens)
    assert_bit_equal(emu.round_activations(x), reference.round_activations(x))
    assert_bit_equal(emu.round_activations(x[:, ::2].contiguous()[:, :288]), reference.round_activations(x[:, ::2][:, :288]))
    x[-1, 200] = float("inf")
    x[0, 5] = float("nan")
    got = emu.round_activations(x)
    assert_bit_equal(got, reference.round_activations(x))
    assert torch.isnan(got[-1, 192:224]).all() and torch.isnan(got[0, :32]).all()


@pytest.mark.parametrize("tokens", [1, 2, 9, QUANT_GEMV_MAX + 1, 40])
def test_quant_linear_rounds_activations_as_the_cpu_op(tokens):
    """x @ I^T is the rounded x itself (one product per output): both CUDA paths give the CPU op's
    and the twin's rounding bit for bit; an inf makes its token row NaN."""
    x = activation_rows(tokens, 100 + tokens)
    n = x.shape[1] - 5
    eye = identity_q8_0(n, x.shape[1])
    got = emu.quant_linear(x, eye)
    assert_bit_equal(got, reference.round_activations(x)[:, :n])
    assert_bit_equal(got, ops.quant_linear(x, eye))
    if tokens > 1:
        x[1, 200] = float("inf")
        got = emu.quant_linear(x, eye)
        assert torch.isnan(got[1]).all() and not torch.isnan(got[0]).any()


def test_quant_gemv_strided_x_and_alignment():
    blocks = finite_blocks("Q4_1", 9, 3, seed=4)
    x = torch.randn(4, 3 * 96)[:, ::3]  # inner stride 3: rounded into contiguous rows first, as the glue does
    torch.testing.assert_close(emu.quant_linear(x, blocks), reference.quant_linear(x, blocks), atol=1e-3, rtol=1e-4)
    # The decode launcher refuses blocks or token rows that are not 16-byte aligned (its loads need
    # them; the glue copies such blocks, and its rounded rows are a fresh tensor).
    flat = torch.empty(blocks.numel() + 16, dtype=torch.uint8)
    start = (16 - flat.data_ptr() % 16) % 16 + 4
    shifted = flat[start : start + blocks.numel()].view(blocks.shape)
    shifted.copy_(blocks)
    rows = x.contiguous()
    assert torch.equal(emu.quant_gemv(rows, blocks), emu.quant_gemv(rows, blocks.clone()))
    with pytest.raises(RuntimeError, match="emulated quant_linear failed"):
        emu.quant_gemv(rows, shifted)
    wide = torch.empty(4 * 96 + 4)
    off = (16 - wide.data_ptr() % 16) % 16 // 4 + 1
    misaligned_x = wide[off : off + 4 * 96].view(4, 96)
    misaligned_x.copy_(rows)
    with pytest.raises(RuntimeError, match="emulated quant_linear failed"):
        emu.quant_gemv(misaligned_x, blocks)
