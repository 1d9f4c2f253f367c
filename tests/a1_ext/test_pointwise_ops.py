"""a1::silu_and_mul and a1::rotary_embedding on CPU against their twins (a1_ext/reference.py).

Both round to 16-bit dtypes where the torch formulation has a tensor of the model dtype (silu's
result before the multiply by up; x * cos before the rotated half is added). Rounding once would
stay within tolerance, so the tests also bound the fraction of elements that differ at all.
"""
import pytest
import torch

from a1_ext import ops, reference
from cuda_cases import activation_case, assert_close_up_to_rounding, rotary_case

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


# ----------------------------------------------------------------------------- silu_and_mul
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [64, 1536, 4095])
@pytest.mark.parametrize("num_rows", [0, 1, 37])
def test_silu_and_mul_matches_twin(dtype, width, num_rows):
    x = activation_case(num_rows, width, dtype)
    out = ops.silu_and_mul(x)
    assert out.shape == (num_rows, width) and out.dtype == dtype and out.is_contiguous()
    assert_close_up_to_rounding(out, reference.silu_and_mul(x), dtype)


def test_silu_and_mul_strided_inputs():
    wide = activation_case(37, 2 * 1536 + 40, torch.float32)
    x = wide[:, 40:]  # rows of a wider buffer
    assert_close_up_to_rounding(ops.silu_and_mul(x), reference.silu_and_mul(x), torch.float32)
    x_t = activation_case(2 * 96, 5, torch.float32).t()  # last dim not contiguous: copied first
    assert_close_up_to_rounding(ops.silu_and_mul(x_t), reference.silu_and_mul(x_t), torch.float32)


def test_silu_and_mul_extreme_values():
    gate = torch.tensor([-1e4, -90.0, -20.0, -1e-30, 0.0, 1e-30, 5.0, 90.0, 1e4, float("inf"), float("nan"), 1.0])
    x = torch.cat([gate, torch.full_like(gate, 2.0)])[None]
    torch.testing.assert_close(ops.silu_and_mul(x), reference.silu_and_mul(x), atol=1e-30, rtol=1e-6, equal_nan=True)


def test_silu_and_mul_parallel_rows_match_single_rows():
    x = activation_case(300, 1536, torch.float32, seed=4)  # enough rows for at::parallel_for
    batched = ops.silu_and_mul(x)
    for t in (0, 101, 299):
        assert torch.equal(batched[t], ops.silu_and_mul(x[t : t + 1])[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_silu_and_mul_opcheck(dtype):
    torch.library.opcheck(torch.ops.a1.silu_and_mul.default, (activation_case(5, 96, dtype),))


def test_silu_and_mul_misuse_is_named():
    with pytest.raises(RuntimeError, match="x must be 2-D"):
        ops.silu_and_mul(torch.randn(2, 3, 8))
    with pytest.raises(RuntimeError, match=r"x.size\(1\) must be even"):
        ops.silu_and_mul(torch.randn(2, 7))
    with pytest.raises(RuntimeError, match="x must be float32, bfloat16 or float16"):
        ops.silu_and_mul(torch.ones(2, 8, dtype=torch.int64))


# ----------------------------------------------------------------------------- rotary_embedding
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_dim", [6, 64, 80, 128])
@pytest.mark.parametrize("num_tokens", [0, 1, 37])
def test_rotary_matches_twin_on_a_qkv_slice(dtype, head_dim, num_tokens):
    qkv, cos, sin = rotary_case(num_tokens, 12, 3, head_dim, dtype)
    qk = qkv[:, :12]  # q and k heads of a fused projection: token stride covers the v heads too
    want, value_before = qk.clone(), qkv[:, 12:].clone()
    reference.rotary_embedding(want, cos, sin)
    assert ops.rotary_embedding(qk, cos, sin) is None
    assert_close_up_to_rounding(qk, want, dtype)
    assert torch.equal(qkv[:, 12:], value_before)  # the v heads are not touched


def test_rotary_rotates_like_transformers():
    # With the pre-signed table, rotate_half(x) * sin == roll(x, D/2) * signed_sin.
    positions = torch.tensor([0.0, 5.0, 1000.0])
    freqs = positions[:, None] * (1.0 / (10000 ** (torch.arange(0, 64, 2).float() / 64)))[None]
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((-freqs.sin(), freqs.sin()), -1)
    x = torch.randn(3, 4, 64)
    x1, x2 = x[..., :32], x[..., 32:]
    true_sin = torch.cat((freqs, freqs), -1).sin()[:, None]
    want = x * cos[:, None] + torch.cat((-x2, x1), dim=-1) * true_sin  # transformers' apply_rotary_pos_emb
    ops.rotary_embedding(x, cos, sin)
    torch.testing.assert_close(x, want, atol=1e-5, rtol=1e-5)


def test_rotary_head_strided_x_and_table_views():
    x = torch.randn(5, 64, 4).transpose(1, 2).contiguous()[:, ::2]  # head stride 128
    table = torch.randn(5, 2, 64)
    cos, sin = table[:, 0], table[:, 1]  # row stride 128, shared layout
    want = x.clone()
    reference.rotary_embedding(want, cos, sin)
    ops.rotary_embedding(x, cos, sin)
    assert_close_up_to_rounding(x, want, torch.float32)
    x2, want2 = want.clone(), want.clone()
    sin_t = torch.randn(64, 5).t()  # column-strided table: copied first
    reference.rotary_embedding(want2, cos, sin_t)
    ops.rotary_embedding(x2, cos, sin_t)
    assert_close_up_to_rounding(x2, want2, torch.float32)


def test_rotary_parallel_tokens_match_single_tokens():
    qkv, cos, sin = rotary_case(300, 12, 3, 64, torch.float32, seed=4)  # enough tokens for parallel_for
    batched = qkv[:, :12].clone()
    ops.rotary_embedding(batched, cos, sin)
    for t in (0, 77, 299):
        single = qkv[t : t + 1, :12].clone()
        ops.rotary_embedding(single, cos[t : t + 1], sin[t : t + 1])
        assert torch.equal(batched[t], single[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotary_opcheck(dtype):
    qkv, cos, sin = rotary_case(5, 4, 2, 32, dtype)
    torch.library.opcheck(torch.ops.a1.rotary_embedding.default, (qkv[:, :4], cos, sin))


def test_rotary_misuse_is_named():
    x, cos, sin = torch.randn(3, 2, 8), torch.randn(3, 8), torch.randn(3, 8)
    with pytest.raises(RuntimeError, match="x must be 3-D"):
        ops.rotary_embedding(x[0], cos, sin)
    with pytest.raises(RuntimeError, match=r"x.size\(2\) \(head_dim\) must be even"):
        ops.rotary_embedding(torch.randn(3, 2, 7), cos[:, :7], sin[:, :7])
    with pytest.raises(RuntimeError, match="x must have a contiguous head_dim"):
        ops.rotary_embedding(torch.randn(3, 8, 2).transpose(1, 2), cos, sin)
    with pytest.raises(RuntimeError, match="cos"):
        ops.rotary_embedding(x, cos[:2], sin)
    with pytest.raises(RuntimeError, match="sin must have x's dtype"):
        ops.rotary_embedding(x, cos, sin.double())
    with pytest.raises(RuntimeError, match="sin"):
        ops.rotary_embedding(x, cos, sin[:, :4])
