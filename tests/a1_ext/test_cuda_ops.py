"""Every a1 op on a CUDA device: the CUDA kernel against its pure-torch twin and the CPU kernel,
distribution tests of the random ops, and torch.library.opcheck. Skipped (with the reason) where
there is no CUDA device or the extension was built without its CUDA kernels (A1_CUDA=0).
test_cuda_emulated.py runs the same kernels on the CPU where no GPU is lent.
"""
from __future__ import annotations

import pytest
import torch

from cuda_cases import (activation_case, assert_close_up_to_rounding, assert_one_rounding_from_twin, attention_case,
                        cuda_skip_reason, layer_case, layers_case, norm_case, reference, rotary_case, sampling_params,
                        score_case, verify_case)

_reason = cuda_skip_reason()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from a1_ext import ops  # noqa: E402  (importing loads the compiled library)
from a1_ext.quant_formats import QUANT_FORMATS  # noqa: E402
from quant_cases import (assert_bit_equal, finite_blocks, gguf_dequantize, in_features, quantize_weight,  # noqa: E402
                         random_blocks)
from sampling_checks import check_sample_distribution, check_verify_distribution, on_device  # noqa: E402

CUDA = torch.device("cuda")
FLOATS = [torch.float32, torch.float16, torch.bfloat16]


def has_cpu_kernel(name: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"a1::{name}", "CPU")


def to(device, *tensors):
    return [t.to(device) if isinstance(t, torch.Tensor) else t for t in tensors]


def assert_close(got, want, dtype=torch.float32):
    tol = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(got.cpu().float(), want.cpu().float(), atol=tol, rtol=tol, equal_nan=True)


# ------------------------------------------------------------------------------------------ cache
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("block_size", [1, 16])
def test_reshape_and_cache(dtype, block_size):
    g = torch.Generator().manual_seed(0)
    key, value = torch.randn(9, 2, 80, generator=g).to(dtype), torch.randn(9, 2, 80, generator=g).to(dtype)
    num_blocks = 12 // block_size + 2
    k_cache = torch.zeros(num_blocks, block_size, 2, 80, dtype=dtype)
    v_cache = torch.zeros_like(k_cache)
    slots = torch.tensor([3, -1, 0, 5, num_blocks * block_size - 1, -1, 8, 2, 1])
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    reference.reshape_and_cache(key, value, k_ref, v_ref, slots)
    k_dev, v_dev = to(CUDA, k_cache, v_cache)
    ops.reshape_and_cache(*to(CUDA, key, value), k_dev, v_dev, slots.to(CUDA))
    assert torch.equal(k_dev.cpu(), k_ref) and torch.equal(v_dev.cpu(), v_ref)
    if has_cpu_kernel("reshape_and_cache"):
        ops.reshape_and_cache(key, value, k_cache, v_cache, slots)
        assert torch.equal(k_dev.cpu(), k_cache) and torch.equal(v_dev.cpu(), v_cache)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_copy_blocks(dtype):
    g = torch.Generator().manual_seed(1)
    caches = [torch.randn(6, 16, 2, 64, generator=g).to(dtype) for _ in range(4)]
    mapping = torch.tensor([[0, 3], [5, 1], [2, 2]])
    want = [c.clone() for c in caches]
    reference.copy_blocks(want[:2], want[2:], mapping)
    dev = to(CUDA, *caches)
    ops.copy_blocks(dev[:2], dev[2:], mapping.to(CUDA))
    for got, ref in zip(dev, want):
        assert torch.equal(got.cpu(), ref)


# ------------------------------------------------------------------------------------------ attention
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("head_dim,block_size", [(64, 16), (80, 1), (128, 16)])
def test_paged_attention(dtype, head_dim, block_size):
    args = attention_case(dtype, head_dim, block_size, q_lens=[1, 7, 0, 3, 1], seq_lens=[19, 40, 4, 3, 300],
                          num_q_heads=8, num_kv_heads=2)
    want = reference.paged_attention(*args)
    got = ops.paged_attention(*to(CUDA, *args))
    assert_close(got, want, dtype)
    if dtype != torch.float32:  # atol 2e-2 alone passes a kernel that rounds the softmax to bf16
        assert_one_rounding_from_twin(got.cpu(), want)
    if has_cpu_kernel("paged_attention"):
        assert_close(got, ops.paged_attention(*args), dtype)


def test_paged_attention_split_kv_decode():
    # Two decode tokens over long contexts: few CTAs, so the kernel splits the KV range.
    args = attention_case(torch.bfloat16, 128, 16, q_lens=[1, 1], seq_lens=[3000, 1234], num_q_heads=4,
                          num_kv_heads=1)
    got, want = ops.paged_attention(*to(CUDA, *args)), reference.paged_attention(*args)
    assert_close(got, want, torch.bfloat16)
    assert_one_rounding_from_twin(got.cpu(), want)


# ------------------------------------------------------------------------------------------ normalization
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("num_rows,hidden,row_stride", [(1, 576, None), (37, 4095, None), (37, 64, 200), (0, 64, None)])
def test_rms_norm(dtype, num_rows, hidden, row_stride):
    x, _, weight = norm_case(num_rows, hidden, dtype, row_stride=row_stride)
    got = ops.rms_norm(*to(CUDA, x, weight), 1e-5)
    assert got.is_contiguous()
    assert_close_up_to_rounding(got.cpu(), reference.rms_norm(x, weight, 1e-5), dtype)
    if has_cpu_kernel("rms_norm"):
        assert_close_up_to_rounding(got.cpu(), ops.rms_norm(x, weight, 1e-5), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("num_rows,hidden,row_stride", [(1, 576, None), (37, 4095, None), (37, 64, 200), (0, 64, None)])
def test_fused_add_rms_norm(dtype, num_rows, hidden, row_stride):
    x, residual, weight = norm_case(num_rows, hidden, dtype, row_stride=row_stride)
    x_dev, residual_dev = x.to(CUDA), residual.to(CUDA)
    reference.fused_add_rms_norm(x, residual, weight, 1e-5)
    ops.fused_add_rms_norm(x_dev, residual_dev, weight.to(CUDA), 1e-5)
    assert torch.equal(residual_dev.cpu(), residual)  # one rounded add: exact
    assert_close_up_to_rounding(x_dev.cpu(), x, dtype)


def test_norm_misuse_names_the_argument():
    x, residual, weight = to(CUDA, *norm_case(3, 64))
    with pytest.raises(RuntimeError, match="weight"):
        ops.rms_norm(x, weight[:32], 1e-5)
    with pytest.raises(RuntimeError, match="weight"):
        ops.fused_add_rms_norm(x, residual, weight.half(), 1e-5)
    with pytest.raises(RuntimeError, match="residual"):
        ops.fused_add_rms_norm(x, residual.cpu(), weight, 1e-5)


# ------------------------------------------------------------------------------------------ linear
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("tokens,out_features,in_features", [(1, 960, 576), (5, 37, 1539), (40, 64, 64)])
def test_linear(dtype, tokens, out_features, in_features):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, in_features, generator=g).to(dtype)
    weight = (torch.randn(out_features, in_features, generator=g) / in_features**0.5).to(dtype)
    bias = torch.randn(out_features, generator=g).to(dtype)
    got = ops.linear(*to(CUDA, x, weight, bias))
    assert got.is_contiguous() and got.shape == (tokens, out_features) and got.dtype == dtype
    assert_close(got, reference.linear(x.float(), weight.float(), bias.float()), dtype)
    with pytest.raises(RuntimeError, match="weight must be on"):
        ops.linear(x.to(CUDA), weight, None)
    torch.library.opcheck(torch.ops.a1.linear.default, tuple(to(CUDA, x, weight, bias)))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("tokens", [1, 40])
def test_linear_on_weight_panels(dtype, tokens):
    """Panels (a1's CPU layout) also run on CUDA, as one batched product."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(tokens, 96, generator=g).to(dtype)
    weight = (torch.randn(160, 96, generator=g) / 96**0.5).to(dtype)
    bias = torch.randn(160, generator=g).to(dtype)
    got = ops.linear(*to(CUDA, x, ops.to_weight_panels(weight), bias))
    assert got.is_contiguous() and got.shape == (tokens, 160)
    assert_close(got, reference.linear(x.float(), weight.float(), bias.float()), dtype)
    hidden, tokens_ids, cu = x, torch.randint(0, 160, (tokens,), generator=g), torch.tensor([0, tokens])
    scores = ops.linear_step_score(*to(CUDA, hidden, ops.to_weight_panels(weight), tokens_ids, cu), 1.0, 64)
    for got_, want_ in zip(scores, reference.linear_step_score(hidden, weight, tokens_ids, cu, 1.0, 64)):
        assert_close(got_, want_)


@pytest.mark.parametrize("q_lens,seq_lens", [([1], [13]), ([1, 1, 1], [5, 9, 17]), ([3, 5], [10, 5])])
def test_decoder_layer(q_lens, seq_lens):
    """The composite op on CUDA tensors runs the CUDA kernels: same result as on the CPU."""
    case = layer_case(q_lens, seq_lens, bias=True)
    on_cuda = {k: v.to(CUDA) if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    on_cpu = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    got = ops.decoder_layer(**on_cuda)
    want = ops.decoder_layer(**on_cpu)
    assert got.device.type == "cuda"
    assert_close(got, want)
    for name in ("residual", "hidden", "k_cache", "v_cache"):
        assert_close(on_cuda[name], on_cpu[name])


def test_decoder_layers():
    """Two layers in one call on CUDA tensors: the same as on the CPU."""
    stack = layers_case([1, 2], [6, 2], 2, bias=True)

    def on(device):
        return {k: [t.to(device) if t is not None else None for t in v] if isinstance(v, list)
                else v.to(device) if isinstance(v, torch.Tensor) else v for k, v in stack.items()}

    on_cuda, on_cpu = on(CUDA), on("cpu")
    got, want = ops.decoder_layers(**on_cuda), ops.decoder_layers(**on_cpu)
    assert got.device.type == "cuda"
    assert_close(got, want)
    assert_close(on_cuda["residual"], on_cpu["residual"])


# ------------------------------------------------------------------------------------------ quantized
# GGUF block weights (quant_cases.py): dequantize exact (gguf.quants' float32 bit for bit, as on the
# CPU); quant_linear through the decode kernel (T <= QUANT_GEMV_MAX) and the dequantize + cuBLAS path.
QUANT_GEMV_MAX = 16  # kQuantGemvMaxTokens, csrc/quant/quant_cuda.h


@pytest.fixture
def no_tf32():
    """cuBLAS in full fp32: the GEMM path is compared to fp32 sums at 1e-4."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("name", QUANT_FORMATS)
def test_dequantize(name):
    blocks = random_blocks(name, rows=37, blocks_per_row=3, seed=1)  # edge scales, every nibble
    want = gguf_dequantize(blocks, name)
    got = ops.dequantize(blocks.to(CUDA))
    assert got.device.type == "cuda"
    assert_bit_equal(got.cpu(), want)
    assert_bit_equal(got.cpu(), ops.dequantize(blocks))
    for rows in (torch.tensor([3, 0, 36, 3]), torch.tensor([7], dtype=torch.int32), torch.tensor([], dtype=torch.int64)):
        assert_bit_equal(ops.dequantize(blocks.to(CUDA), rows).cpu(), want[rows.long()])  # rows on the CPU
        assert_bit_equal(ops.dequantize(blocks.to(CUDA), rows.to(CUDA)).cpu(), want[rows.long()])
    with pytest.raises(RuntimeError, match=r"rows must be in \[0, 37\)"):
        ops.dequantize(blocks.to(CUDA), torch.tensor([37], device=CUDA))


@pytest.mark.parametrize("name", QUANT_FORMATS)
@pytest.mark.parametrize("tokens", [1, 3, QUANT_GEMV_MAX, QUANT_GEMV_MAX + 1, 64])
def test_quant_linear(name, tokens, no_tf32):
    nb = 6 if QUANT_FORMATS[name].block_size == 256 else 48  # K = 1536
    # N = 333: odd; small scales: Q6_K's int8 sub-scales would otherwise make sums of ~1e3 over K = 1536
    blocks = finite_blocks(name, 333, nb, seed=tokens, scale=0.002)
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, in_features(name, nb), generator=g)
    bias = torch.randn(333, generator=g)
    want = reference.quant_linear(x, blocks, bias)
    got = ops.quant_linear(*to(CUDA, x, blocks, bias))
    assert got.is_contiguous() and got.shape == (tokens, 333) and got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), want, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(got.cpu(), ops.quant_linear(x, blocks, bias), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(ops.quant_linear(*to(CUDA, x, blocks)).cpu(), want - bias, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("tokens", [4, 40])
def test_quant_linear_views(tokens, no_tf32):
    """Strided token rows and a weight view that is not 16-byte aligned (copied by the glue)."""
    blocks = finite_blocks("Q4_K", 50, 2, seed=5)
    flat = torch.zeros(blocks.numel() + 16, dtype=torch.uint8, device=CUDA)
    misaligned = flat[6 : 6 + blocks.numel()].view(blocks.shape)
    misaligned.copy_(blocks.to(CUDA))
    x = torch.randn(tokens, 3 * 512)[:, ::3]
    want = reference.quant_linear(x, blocks)
    torch.testing.assert_close(ops.quant_linear(x.to(CUDA), misaligned).cpu(), want, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(ops.quant_linear(x.to(CUDA), blocks.to(CUDA)).cpu(), want, atol=1e-3, rtol=1e-4)
    with pytest.raises(RuntimeError, match="weight must be on x's device"):
        ops.quant_linear(x.to(CUDA), blocks)


def test_quant_linear_gemm_in_slices(no_tf32):
    """A weight of more than 2^25 weights: the GEMM path dequantizes it in two slices of rows."""
    blocks = finite_blocks("Q4_0", 8200, 128, seed=6)  # K = 4096, N * K > 2^25
    g = torch.Generator().manual_seed(6)
    x, bias = torch.randn(20, 4096, generator=g), torch.randn(8200, generator=g)
    want = reference.quant_linear(x, blocks, bias)
    torch.testing.assert_close(ops.quant_linear(*to(CUDA, x, blocks, bias)).cpu(), want, atol=2e-3, rtol=1e-4)


def test_linear_step_score_on_a_quantized_head():
    head = finite_blocks("Q6_K", 3000, 1, scale=0.002)  # logits of a few units
    g = torch.Generator().manual_seed(7)
    hidden = torch.randn(40, 256, generator=g)
    ids, cu = torch.randint(0, 3000, (40,), generator=g), torch.tensor([0, 15, 15, 40])
    want = reference.linear_step_score(hidden, head, ids, cu, 0.8, 512)
    got = ops.linear_step_score(*to(CUDA, hidden, head, ids, cu), 0.8, 512)
    for got_, want_ in zip(got, want):
        torch.testing.assert_close(got_.cpu(), want_, atol=1e-3, rtol=1e-4, equal_nan=True)


@pytest.mark.parametrize("tokens", [1, 2, 9, QUANT_GEMV_MAX + 1, 40])
def test_quant_linear_rounds_activations_as_the_cpu_op(tokens):
    """x @ I^T is the 8-bit rounded x itself (one product per output): both CUDA paths give the CPU
    op's and the twin's rounding bit for bit; an inf makes its token row NaN."""
    K = 32 * 19
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, K, generator=g) * torch.logspace(-30, 10, K)[torch.randperm(K, generator=g)]
    x[0, :6] = torch.tensor([127.0, 0.5, 1.5, 2.5, -2.5, 126.6])  # ties to even
    x[0, 32:64] = 0.0
    x[-1, 100:132] = 1e-40  # subnormal
    eye = torch.zeros(K - 5, K // 32, 34, dtype=torch.uint8)  # Q8_0 blocks of the identity
    eye[:, :, 0:2] = torch.tensor([1.0], dtype=torch.float16).view(torch.uint8)
    for i in range(K - 5):
        eye[i, i // 32, 2 + i % 32] = 1
    got = ops.quant_linear(*to(CUDA, x, eye)).cpu()
    assert_bit_equal(got, reference.round_activations(x)[:, : K - 5])
    assert_bit_equal(got, ops.quant_linear(x, eye))
    if tokens > 1:
        x[1, 200] = float("inf")
        got = ops.quant_linear(*to(CUDA, x, eye)).cpu()
        assert torch.isnan(got[1]).all() and not torch.isnan(got[0]).any()


def assert_close_up_to_activation_rounding(got, want, limit=1e-3):
    """For composites: the ops before quant_linear differ by float rounding between devices, which
    now and then moves an activation across an 8-bit rounding step (~1% of its group's max). A norm
    bound: a decoding or indexing error moves the whole result."""
    relative = ((got.cpu() - want.cpu()).norm() / want.cpu().norm()).item()
    assert relative <= limit, f"differs by {relative:.2e} of the norm"


@pytest.mark.parametrize("q_lens,seq_lens", [([1, 1], [5, 9]), ([3, 5], [10, 5])])
def test_decoder_layer_on_quantized_weights(q_lens, seq_lens):
    """Block projections inside the composite op run the CUDA quant_linear: as on the CPU."""
    case = layer_case(q_lens, seq_lens, bias=True, seed=3)
    for key, fmt in {"qkv_weight": "Q8_0", "o_weight": "Q4_0", "gate_up_weight": "Q4_1"}.items():
        case[key] = quantize_weight(case[key], fmt)
    on_cuda = {k: v.to(CUDA) if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    on_cpu = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    got, want = ops.decoder_layer(**on_cuda), ops.decoder_layer(**on_cpu)
    assert got.device.type == "cuda"
    assert_close_up_to_activation_rounding(got, want)
    assert_close_up_to_activation_rounding(on_cuda["residual"], on_cpu["residual"])


# ------------------------------------------------------------------------------------------ activation
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("num_rows,width", [(1, 1536), (37, 4095), (0, 64)])
def test_silu_and_mul(dtype, num_rows, width):
    x = activation_case(num_rows, width, dtype)
    got = ops.silu_and_mul(x.to(CUDA))
    assert got.is_contiguous() and got.shape == (num_rows, width)
    assert_close_up_to_rounding(got.cpu(), reference.silu_and_mul(x), dtype)
    if has_cpu_kernel("silu_and_mul"):
        assert_close_up_to_rounding(got.cpu(), ops.silu_and_mul(x), dtype)


# ------------------------------------------------------------------------------------------ rotary
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("num_tokens,head_dim", [(1, 64), (37, 128), (37, 6), (0, 64)])
def test_rotary_embedding(dtype, num_tokens, head_dim):
    qkv, cos, sin = rotary_case(num_tokens, 12, 3, head_dim, dtype)
    qkv_dev = qkv.to(CUDA)
    ops.rotary_embedding(qkv_dev[:, :12], cos.to(CUDA), sin.to(CUDA))
    reference.rotary_embedding(qkv[:, :12], cos, sin)
    assert_close_up_to_rounding(qkv_dev[:, :12].cpu(), qkv[:, :12], dtype)
    assert torch.equal(qkv_dev[:, 12:].cpu(), qkv[:, 12:])  # the v heads are not touched


# ------------------------------------------------------------------------------------------ scoring
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("vocab", [111, 32000])
def test_step_score(dtype, vocab):
    logits, tokens, cu = score_case(13, vocab, [5, 0, 8], dtype)
    want = reference.step_score(logits, tokens, cu, 0.8)
    got = ops.step_score(*to(CUDA, logits, tokens, cu), 0.8)
    for g_, w_ in zip(got, want):
        assert_close(g_, w_)
    if has_cpu_kernel("step_score"):
        for g_, c_ in zip(got, ops.step_score(logits, tokens, cu, 0.8)):
            assert_close(g_, c_)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("hidden_size,vocab,chunk", [(40, 333, 128), (96, 5000, 1024), (64, 49152, 4096)])
def test_linear_step_score(dtype, hidden_size, vocab, chunk):
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(130, hidden_size, generator=g).to(dtype)
    lm_head = (torch.randn(vocab, hidden_size, generator=g) / hidden_size**0.5).to(dtype)
    tokens, cu = torch.randint(0, vocab, (130,), generator=g), torch.tensor([0, 64, 64, 130])
    want = reference.linear_step_score(hidden, lm_head, tokens, cu, 1.0, chunk)
    got = ops.linear_step_score(*to(CUDA, hidden, lm_head, tokens, cu), 1.0, chunk)
    for g_, w_ in zip(got, want):
        assert_close(g_, w_)
    if has_cpu_kernel("linear_step_score"):
        for g_, c_ in zip(got, ops.linear_step_score(hidden, lm_head, tokens, cu, 1.0, chunk)):
            assert_close(g_, c_)


# ------------------------------------------------------------------------------------------ sampling
def race_key_of(logits_row, token, temperature, top_k, top_p, seed, offset):
    scaled = reference.filtered_logits(logits_row, temperature, top_k, top_p)
    uniforms = reference.race_uniforms(seed, offset, reference.RNG_SAMPLE_RACE, 0, logits_row.numel())
    return float(reference.race_keys(scaled, uniforms)[token])


def assert_same_tokens_except_near_ties(got, want, logits, params):
    """Token for token, except where the two tokens' race keys tie to float rounding."""
    for b in torch.nonzero(got != want).flatten().tolist():
        if float(params[0][b]) == 0.0:
            raise AssertionError(f"greedy row {b}: {int(got[b])} != {int(want[b])}")
        row_params = [float(params[0][b]), int(params[1][b]), float(params[2][b]), int(params[3][b]), int(params[4][b])]
        k_got = race_key_of(logits[b], int(got[b]), *row_params)
        k_want = race_key_of(logits[b], int(want[b]), *row_params)
        assert abs(k_got - k_want) <= 1e-5 * max(1.0, abs(k_want)), f"row {b}: {int(got[b])} != {int(want[b])}"


FILTERS = ([0.0, 1.0, 0.7, 1.3, 0.9, 1.0, 0.5, 2.0], [0, 0, 5, 0, 20, 1, 50, 0], [1.0, 1.0, 1.0, 0.8, 0.6, 1.0, 0.95, 1.0])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("vocab", [111, 50000])
def test_sample_matches_twin_and_cpu(dtype, vocab):
    logits, _, _ = score_case(8, vocab, [8], dtype, seed=5)
    params = sampling_params(8, *FILTERS)
    ids, logprob = ops.sample(*to(CUDA, logits, *params))
    want_ids, want_logprob = reference.sample(logits, *params)
    assert_same_tokens_except_near_ties(ids.cpu(), want_ids, logits, params)
    assert_close(logprob, want_logprob)
    if has_cpu_kernel("sample"):
        assert_same_tokens_except_near_ties(ids.cpu(), ops.sample(logits, *params)[0], logits, params)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 12, 1.0), (1.2, 0, 0.8), (0.9, 15, 0.9)])
def test_sample_distribution(temperature, top_k, top_p):
    """Chi-square and G-test at p < 1e-6 against transformers' warpers, every token expected > 20
    times drawn (sampling_checks.py): catches a top-k keeping k - 1, a top-p dropping the crossing
    token and a race with the wrong noise, which a cosine similarity > 0.99 let through."""
    logits = 2.5 * torch.randn(40, generator=torch.Generator().manual_seed(7))
    check_sample_distribution(on_device(ops.sample, "cuda"), logits, temperature, top_k, top_p, draws=40000)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_draft_probs", [True, False])
@pytest.mark.parametrize("temperature,top_k,top_p", [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.8, 10, 0.9)])
def test_speculative_verify_matches_twin_and_cpu(dtype, with_draft_probs, temperature, top_k, top_p):
    case = verify_case([3, 0, 2, 4, 8], 3001, dtype, with_draft_probs, temperature=temperature, top_k=top_k, top_p=top_p)
    out_ids, num_accepted, target_logprob = ops.speculative_verify(*to(CUDA, *case))
    want = reference.speculative_verify(*case)
    assert out_ids.device.type == "cuda" and num_accepted.device.type == "cuda"
    assert torch.equal(num_accepted.cpu(), want[1]) and torch.equal(out_ids.cpu(), want[0])
    assert_close(target_logprob, want[2])
    if has_cpu_kernel("speculative_verify"):
        cpu = ops.speculative_verify(*case)
        assert torch.equal(out_ids.cpu(), cpu[0]) and torch.equal(num_accepted.cpu(), cpu[1])


def test_speculative_verify_cu_num_draft_on_cpu():
    case = verify_case([2, 5, 1], 500)
    dev = to(CUDA, *case)
    dev[2] = case[2]  # the scheduler's CPU copy: no device-to-host read for the output width
    got = ops.speculative_verify(*dev)
    want = reference.speculative_verify(*case)
    assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])


@pytest.mark.parametrize("with_draft_probs", [True, False])
@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.8, 10, 0.9)])
def test_speculative_verify_distribution(with_draft_probs, temperature, top_k, top_p):
    """Whatever the draft, every emitted token (first, after accepted drafts, bonus) must follow the
    filtered target p: a resample from p instead of max(p - q, 0) fails the chi-square."""
    g = torch.Generator().manual_seed(8)
    vocab, k = 30, 2
    target_rows = 2.5 * torch.randn(k + 1, vocab, generator=g)
    q = 0.7 * torch.softmax(target_rows[:k] + 2 * torch.randn(k, vocab, generator=g), -1)
    q[torch.arange(k), target_rows[:k].argsort(-1)[:, -2]] += 0.3  # over-proposes the runner-up
    fixed = [int(target_rows[0].argmax()), int(target_rows[1].argsort()[-2])]
    check_verify_distribution(on_device(ops.speculative_verify, "cuda"), target_rows, q if with_draft_probs else None,
                              None if with_draft_probs else fixed, temperature, top_k, top_p, requests=30000)


# ------------------------------------------------------------------------------------------ opcheck
def _opcheck_cases():
    attn = attention_case(torch.bfloat16, 64, 16, q_lens=[1, 3], seq_lens=[20, 5])
    logits, tokens, cu = score_case(6, 300, [2, 4])
    key = torch.randn(4, 2, 64)
    caches = [torch.zeros(3, 16, 2, 64) for _ in range(2)]
    verify = verify_case([2, 1], 200)
    return [
        ("reshape_and_cache", (key, key.clone(), *caches, torch.tensor([0, 17, -1, 40]))),
        ("copy_blocks", ([caches[0].clone()], [caches[1].clone()], torch.tensor([[0, 2]]))),
        ("paged_attention", attn),
        ("rms_norm", (key[:, 0], torch.randn(64), 1e-5)),
        ("fused_add_rms_norm", (key[:, 0].clone(), key[:, 1].clone(), torch.randn(64), 1e-5)),
        ("silu_and_mul", (activation_case(4, 48),)),
        ("rotary_embedding", (rotary_case(4, 4, 2, 32)[0][:, :4], *rotary_case(4, 4, 2, 32)[1:])),
        ("step_score", (logits, tokens, cu, 1.0)),
        ("linear_step_score", (torch.randn(6, 32), torch.randn(300, 32), tokens, cu, 1.0, 128)),
        ("sample", (logits, *sampling_params(6, 0.8, 10, 0.9))),
        ("speculative_verify", verify),
        ("dequantize", (finite_blocks("Q4_K", 20, 2), torch.tensor([2, 5, 19]))),
        ("quant_linear", (torch.randn(3, 160), finite_blocks("Q4_1", 21, 5), torch.randn(21))),
        ("quant_linear", (torch.randn(20, 512), finite_blocks("Q5_K", 21, 2), None)),
    ]


@pytest.mark.parametrize("name,args", _opcheck_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_opcheck_cuda(name, args):
    op = getattr(torch.ops.a1, name).default
    dev_args = [to(CUDA, *a) if isinstance(a, list) else a for a in to(CUDA, *args)]
    torch.library.opcheck(op, tuple(dev_args))
