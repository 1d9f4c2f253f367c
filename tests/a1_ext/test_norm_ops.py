"""a1::rms_norm and a1::fused_add_rms_norm on CPU against their twins (a1_ext/reference.py).

16-bit outputs must agree with transformers' order (normalise in fp32, round, THEN multiply by the
weight) almost everywhere bit for bit: rounding once instead of twice stays within tolerance, so
the tests also bound the fraction of elements that differ at all. Residual sums are exact.
"""
import pytest
import torch

from a1_ext import ops, reference
from cuda_cases import assert_close_up_to_rounding, norm_case

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
EPS = 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [64, 576, 4095])
@pytest.mark.parametrize("num_rows", [0, 1, 37])
def test_rms_norm_matches_twin(dtype, hidden, num_rows):
    x, _, weight = norm_case(num_rows, hidden, dtype)
    out = ops.rms_norm(x, weight, EPS)
    assert out.is_contiguous()
    assert_close_up_to_rounding(out, reference.rms_norm(x, weight, EPS), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [64, 576, 4095])
@pytest.mark.parametrize("num_rows", [0, 1, 37])
def test_fused_add_rms_norm_matches_twin(dtype, hidden, num_rows):
    x, residual, weight = norm_case(num_rows, hidden, dtype)
    x_want, residual_want = x.clone(), residual.clone()
    reference.fused_add_rms_norm(x_want, residual_want, weight, EPS)
    assert ops.fused_add_rms_norm(x, residual, weight, EPS) is None
    assert torch.equal(residual, residual_want)  # one rounded add: exact
    assert_close_up_to_rounding(x, x_want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_strided_inputs(dtype):
    # Rows inside wider buffers, as slices of a fused projection would be.
    x, residual, weight = norm_case(37, 576, dtype, row_stride=3 * 576)
    assert not x.is_contiguous() and not residual.is_contiguous()
    assert_close_up_to_rounding(ops.rms_norm(x, weight, EPS), reference.rms_norm(x, weight, EPS), dtype)
    buffer = x._base if x._base is not None else x
    untouched = buffer[:, 576:].clone()
    x_want, residual_want = x.clone(), residual.clone()
    reference.fused_add_rms_norm(x_want, residual_want, weight, EPS)
    ops.fused_add_rms_norm(x, residual, weight, EPS)
    assert torch.equal(residual, residual_want)
    assert_close_up_to_rounding(x, x_want, dtype)
    assert torch.equal(buffer[:, 576:], untouched)  # the rest of each buffer row is not written


def test_rms_norm_column_strided_x_and_weight():
    x = torch.randn(576, 37).t()  # H not contiguous: copied first
    weight = torch.randn(2 * 576)[::2]
    assert_close_up_to_rounding(ops.rms_norm(x, weight, EPS), reference.rms_norm(x, weight, EPS), torch.float32)


def test_parallel_rows_match_single_rows():
    # Enough rows to take at::parallel_for; every row must equal the same row normalised alone.
    x, _, weight = norm_case(300, 576, torch.float32, seed=4)
    batched = ops.rms_norm(x, weight, EPS)
    for t in (0, 57, 150, 299):
        assert torch.equal(batched[t], ops.rms_norm(x[t : t + 1], weight, EPS)[0])


def test_zero_rows_stay_finite_and_eps_matters():
    x = torch.zeros(2, 64)
    x[1] = 1e-3
    weight = torch.ones(64)
    out = ops.rms_norm(x, weight, 1e-2)
    assert torch.equal(out[0], torch.zeros(64))
    torch.testing.assert_close(out[1], torch.full((64,), 1e-3 / (1e-6 + 1e-2) ** 0.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_opcheck(dtype):
    x, residual, weight = norm_case(5, 96, dtype, seed=3)
    torch.library.opcheck(torch.ops.a1.rms_norm.default, (x, weight, EPS))
    torch.library.opcheck(torch.ops.a1.fused_add_rms_norm.default, (x, residual, weight, EPS))


# ----------------------------------------------------------------------------- misuse
def test_weight_shape_and_dtype_are_named():
    x, _, weight = norm_case(3, 64)
    with pytest.raises(RuntimeError, match="weight"):
        ops.rms_norm(x, weight[:63], EPS)
    with pytest.raises(RuntimeError, match="weight"):
        ops.rms_norm(x, weight.to(torch.bfloat16), EPS)
    with pytest.raises(RuntimeError, match="weight"):
        ops.fused_add_rms_norm(x, x.clone(), weight.view(8, 8), EPS)


def test_x_and_residual_misuse_is_named():
    x, _, weight = norm_case(3, 64)
    with pytest.raises(RuntimeError, match="x must be 2-D"):
        ops.rms_norm(x.view(3, 8, 8), weight, EPS)
    with pytest.raises(RuntimeError, match="x must be float32, bfloat16 or float16"):
        ops.rms_norm(x.to(torch.int32), weight, EPS)
    with pytest.raises(RuntimeError, match="residual"):
        ops.fused_add_rms_norm(x, x[:2].clone(), weight, EPS)
    with pytest.raises(RuntimeError, match="residual"):
        ops.fused_add_rms_norm(x, x.to(torch.float16), weight, EPS)
    with pytest.raises(RuntimeError, match="residual must not share memory"):
        ops.fused_add_rms_norm(x, x, weight, EPS)
    with pytest.raises(RuntimeError, match="x must have a contiguous last dim"):
        ops.fused_add_rms_norm(torch.randn(64, 3).t(), x.clone(), weight, EPS)
    with pytest.raises(RuntimeError, match="eps"):
        ops.rms_norm(x, weight, float("nan"))
